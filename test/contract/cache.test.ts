// Cache contract, run against the embedded cache and Redis on 127.0.0.1:6379.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { createLogger } from '../../src/log.ts'
import { waitFor } from '../helpers/wait.ts'
import type { Cache } from '../../src/ports.ts'
import { createEmbeddedCache } from '../../src/adapters/embedded/cache.ts'
import { createRedisCache } from '../../src/adapters/redis/cache.ts'
import { createRedisLock } from '../../src/adapters/redis/lock.ts'
import { freePorts } from '../helpers/mayfly-process.ts'

const REDIS_URL = 'redis://127.0.0.1:6379'
const silent = createLogger('silent')

/** the checks here are cheap: a fast poll keeps the failover pauses measured close to the truth */
const POLL_MS = 10

async function deleteNamespace(ns: string): Promise<void> {
  const r = new Redis(REDIS_URL)
  const keys = await r.keys(`${ns}:*`)
  if (keys.length > 0) await r.del(...keys)
  await r.quit()
}

const adapters: { name: string; make: (ns: string) => Cache; cleanup: (ns: string) => Promise<void> }[] = [
  { name: 'embedded', make: () => createEmbeddedCache(), cleanup: async () => {} },
  { name: 'redis', make: (ns) => createRedisCache({ url: REDIS_URL, namespace: ns, log: silent }), cleanup: deleteNamespace },
]

for (const a of adapters) {
  describe(`cache contract: ${a.name}`, () => {
    const setup = (t: { after: (fn: () => Promise<void>) => void }) => {
      const ns = `t-${randomUUID().slice(0, 8)}`
      const cache = a.make(ns)
      t.after(async () => {
        await cache.close()
        await a.cleanup(ns)
      })
      return cache
    }

    test('set, get, overwrite, delete', async (t) => {
      const cache = setup(t)
      assert.equal(await cache.get('a'), null)
      await cache.set('a', 'one', 10_000)
      assert.equal(await cache.get('a'), 'one')
      await cache.set('a', 'two', 10_000)
      assert.equal(await cache.get('a'), 'two')
      await cache.delete('a')
      assert.equal(await cache.get('a'), null)
      await cache.delete('a') // idempotent
    })

    test('entries lapse after their TTL', async (t) => {
      const cache = setup(t)
      await cache.set('short', 'x', 50)
      await cache.set('long', 'y', 10_000)
      assert.equal(await cache.get('short'), 'x')
      await waitFor('the short entry to expire', async () => (await cache.get('short')) === null, 2000, POLL_MS)
      assert.equal(await cache.get('long'), 'y')
    })

    test('a miss reserves the key: a fill with its ticket stores the value', async (t) => {
      const cache = setup(t)
      const miss = await cache.lookup('f', 10_000)
      assert.equal(miss.hit, false)
      assert.ok(!miss.hit && typeof miss.ticket === 'string' && miss.ticket.length > 0)
      // a reservation is no value
      assert.equal(await cache.get('f'), null)
      assert.equal((await cache.lookup('f', 10_000)).hit, false)
      assert.equal(await cache.fill('f', miss.ticket, 'read', 10_000), true)
      assert.deepEqual(await cache.lookup('f', 10_000), { hit: true, value: 'read' })
      assert.equal(await cache.get('f'), 'read')
    })

    test('misses while a reservation stands share its ticket; the first fill wins', async (t) => {
      const cache = setup(t)
      const [a, b] = await Promise.all([cache.lookup('s', 10_000), cache.lookup('s', 10_000)])
      assert.ok(!a!.hit && !b!.hit && a!.ticket !== null)
      assert.equal(a!.ticket, b!.ticket)
      assert.equal(await cache.fill('s', a!.ticket, 'first', 10_000), true)
      assert.equal(await cache.fill('s', b!.ticket!, 'second', 10_000), false)
      assert.equal(await cache.get('s'), 'first')
    })

    test('a delete after the lookup voids its ticket: a fill that raced it stores nothing', async (t) => {
      const cache = setup(t)
      const before = await cache.lookup('d', 10_000)
      assert.ok(!before.hit && before.ticket !== null)
      // the source changes and is invalidated while the reader is still reading it
      await cache.delete('d')
      assert.equal(await cache.fill('d', before.ticket, 'stale', 10_000), false)
      assert.equal(await cache.get('d'), null)
      // a reader after the delete reserves anew; the old ticket stays void
      const after = await cache.lookup('d', 10_000)
      assert.ok(!after.hit && after.ticket !== null)
      assert.notEqual(after.ticket, before.ticket)
      assert.equal(await cache.fill('d', before.ticket, 'stale', 10_000), false)
      assert.equal(await cache.fill('d', after.ticket, 'fresh', 10_000), true)
      assert.equal(await cache.get('d'), 'fresh')
      // a delete removes a filled value too
      await cache.delete('d')
      assert.equal(await cache.get('d'), null)
    })

    test('a set after the lookup wins over the fill', async (t) => {
      const cache = setup(t)
      const miss = await cache.lookup('w', 10_000)
      assert.ok(!miss.hit && miss.ticket !== null)
      await cache.set('w', 'written', 10_000)
      assert.equal(await cache.fill('w', miss.ticket, 'read', 10_000), false)
      assert.equal(await cache.get('w'), 'written')
    })

    test('a fill must come within the reservation, and its value lapses after its TTL', async (t) => {
      const cache = setup(t)
      const miss = await cache.lookup('r', 50)
      assert.ok(!miss.hit && miss.ticket !== null)
      // once it lapsed, a miss reserves the key under another ticket
      await waitFor('a new ticket once the first one lapsed', async () => {
        const again = await cache.lookup('r', 50)
        return !again.hit && again.ticket !== miss.ticket
      }, 2000, POLL_MS)
      assert.equal(await cache.fill('r', miss.ticket, 'late', 10_000), false)
      assert.equal(await cache.get('r'), null)
      const next = await cache.lookup('v', 10_000)
      assert.ok(!next.hit && next.ticket !== null)
      assert.equal(await cache.fill('v', next.ticket, 'x', 50), true)
      await waitFor('the entry v to expire', async () => (await cache.get('v')) === null, 2000, POLL_MS)
      assert.equal((await cache.lookup('v', 10_000)).hit, false)
    })

    test('readers racing writers never see a value older than a delete that returned before their lookup', async (t) => {
      const cache = setup(t)
      // the source of truth: a version. A writer bumps it, then deletes the key;
      // `floor` is the newest version whose delete has returned.
      let version = 0
      let floor = 0
      let stop = false
      let fills = 0
      const stale: string[] = []
      const pause = () => new Promise((r) => (Math.random() < 0.5 ? setImmediate(r) : setTimeout(r, Math.random() * 3)))
      const reader = async () => {
        while (!stop) {
          const atStart = floor
          const found = await cache.lookup('race', 10_000)
          if (found.hit) {
            if (Number(found.value) < atStart) stale.push(`read ${found.value} after the delete of ${atStart}`)
          } else {
            const read = version
            await pause() // the read of the source takes a while
            if (found.ticket !== null && (await cache.fill('race', found.ticket, String(read), 10_000))) fills++
          }
          // the embedded cache answers in microtasks: let timers (the writer) run
          await new Promise(setImmediate)
        }
      }
      const writer = async () => {
        for (let i = 0; i < 300; i++) {
          const changed = ++version
          await cache.delete('race')
          floor = Math.max(floor, changed)
          await pause()
        }
        stop = true
      }
      await Promise.all([writer(), ...Array.from({ length: 8 }, reader)])
      assert.ok(fills > 20, `only ${fills} fills: the race hardly ran`)
      assert.deepEqual(stale, [])
    })

    test('status reports ok', async (t) => {
      const cache = setup(t)
      const s = await cache.status()
      assert.equal(s.ok, true)
    })
  })
}

test('embedded cache: size bound evicts the least recently used entry', async () => {
  const cache = createEmbeddedCache({ maxEntries: 2 })
  await cache.set('a', '1', 10_000)
  await cache.set('b', '2', 10_000)
  assert.equal(await cache.get('a'), '1') // a is now the most recently used
  await cache.set('c', '3', 10_000)
  assert.equal(await cache.get('b'), null)
  assert.equal(await cache.get('a'), '1')
  assert.equal(await cache.get('c'), '3')
  assert.equal((await cache.status()).detail.entries, 2)
})

test('embedded cache: an evicted reservation fails its fill', async () => {
  const cache = createEmbeddedCache({ maxEntries: 1 })
  const miss = await cache.lookup('a', 10_000)
  assert.ok(!miss.hit && miss.ticket !== null)
  await cache.set('b', '2', 10_000)
  assert.equal(await cache.fill('a', miss.ticket, '1', 10_000), false)
  assert.equal(await cache.get('a'), null)
  assert.equal(await cache.get('b'), '2')
})

test('redis cache: status reads role and replicas from INFO replication', async (t) => {
  const cache = createRedisCache({ url: REDIS_URL, namespace: `t-${randomUUID().slice(0, 8)}`, log: silent })
  t.after(() => cache.close())
  const s = await cache.status()
  assert.equal(s.ok, true)
  assert.equal(s.detail.role, 'master')
  assert.equal(s.detail.master, '127.0.0.1:6379')
  assert.ok(Array.isArray(s.detail.replicas))
})

test('redis cache: an unreachable Redis is a quick miss, never an error, logged once', async (t) => {
  const [port] = (await freePorts(1)) as [number]
  const lines: string[] = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk))
      done()
    },
  })
  const log = pino({ level: 'warn' }, sink)
  const cache = createRedisCache({ url: `redis://127.0.0.1:${port}`, namespace: 't-down', log, reconnectDelayMs: 20, connectTimeoutMs: 200 })
  t.after(() => cache.close())
  const started = Date.now()
  for (let i = 0; i < 20; i++) {
    assert.equal(await cache.get('a'), null)
    assert.deepEqual(await cache.lookup('a', 1000), { hit: false, ticket: null })
    assert.equal(await cache.fill('a', 'ticket', 'b', 1000), false)
    await cache.set('a', 'b', 1000)
    await cache.delete('a')
  }
  // the first call may wait for the initial connect (200 ms); the rest fail fast
  assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`)
  const status = await cache.status()
  assert.equal(status.ok, false)
  const warns = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40)
  assert.equal(warns.length, 1, JSON.stringify(warns))
})


test('redis via Sentinel: cache and lock find the master and follow a failover', { timeout: 30_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mayfly-sentinel-'))
  const procs: ChildProcess[] = []
  t.after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  })
  const [masterPort, replicaPort, sentinelPort] = (await freePorts(3)) as [number, number, number]
  const redis = (args: string[]) => {
    const p = spawn('redis-server', args, { stdio: 'ignore' })
    procs.push(p)
    return p
  }
  // --dir: a replica's full sync writes an RDB file even with --save ''
  const plain = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]
  const master = redis(['--port', String(masterPort), ...plain, '--dbfilename', 'master.rdb'])
  redis(['--port', String(replicaPort), ...plain, '--dbfilename', 'replica.rdb', '--replicaof', '127.0.0.1', String(masterPort)])
  const name = `t-${randomUUID().slice(0, 8)}`
  const conf = join(dir, 'sentinel.conf')
  await writeFile(
    conf,
    [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      `logfile ${join(dir, 'sentinel.log')}`,
      '',
    ].join('\n'),
  )
  // Sentinel learns replicas from the master's INFO, polled every 10 s: start
  // it once the replica is in sync so that its first poll sees it.
  const direct = new Redis({ port: masterPort, lazyConnect: true, retryStrategy: () => 50, disconnectTimeout: 100 })
  direct.on('error', () => {})
  t.after(() => direct.disconnect())
  await waitFor('the replica online at the master', async () => {
    try {
      if (direct.status === 'wait') await direct.connect()
      return (await direct.info('replication')).includes('state=online')
    } catch {
      return false
    }
  }, 10_000, POLL_MS)
  direct.disconnect()
  redis([conf, '--sentinel'])

  // Sentinel fails over only to a replica it has seen in sync: wait for that.
  const probe = new Redis({ port: sentinelPort, lazyConnect: true, retryStrategy: () => 50, disconnectTimeout: 100 })
  probe.on('error', () => {})
  t.after(() => probe.disconnect())
  await waitFor('the sentinel to see the replica linked to the master', async () => {
    try {
      if (probe.status === 'wait') await probe.connect()
      const rows = (await probe.call('SENTINEL', 'REPLICAS', name)) as string[][]
      const replica = rows.map((row) => Object.fromEntries(row.flatMap((v, i) => (i % 2 ? [] : [[v, row[i + 1]]]))))[0]
      return replica?.flags === 'slave' && replica['master-link-status'] === 'ok'
    } catch {
      return false
    }
  }, 10_000, POLL_MS)

  const options = { sentinels: [{ host: '127.0.0.1', port: sentinelPort }], masterName: name, namespace: 't-sentinel', log: silent, reconnectDelayMs: 100 }
  const cache = createRedisCache(options)
  const lock = createRedisLock(options)
  t.after(async () => {
    await cache.close()
    await lock.close()
  })
  await cache.set('k', 'before', 60_000)
  assert.equal(await cache.get('k'), 'before')
  const before = await cache.status()
  assert.equal(before.detail.master, `127.0.0.1:${masterPort}`)
  assert.equal(before.detail.mode, 'sentinel')
  assert.ok(await lock.acquire('leader', 60_000))
  // replication is asynchronous: kill the master only once the replica has the lease
  const replica = new Redis({ port: replicaPort, lazyConnect: true, retryStrategy: () => 50, disconnectTimeout: 100 })
  replica.on('error', () => {})
  t.after(() => replica.disconnect())
  await waitFor('the lock key replicated', async () => (await replica.exists('t-sentinel:lock:leader')) === 1, 5000, POLL_MS)
  replica.disconnect()

  const killedAt = Date.now()
  master.kill('SIGKILL')
  // a write that reads back means the client now talks to the promoted replica
  let i = 0
  await waitFor('a write read back after the failover', async () => {
    const value = `after-${++i}`
    await cache.set('k', value, 60_000)
    return (await cache.get('k')) === value
  }, 15_000, POLL_MS).catch(async (err: unknown) => {
    t.diagnostic(await readFile(join(dir, 'sentinel.log'), 'utf8'))
    throw err
  })
  const pause = Date.now() - killedAt
  const after = await cache.status()
  assert.equal(after.detail.master, `127.0.0.1:${replicaPort}`)
  assert.equal(after.detail.role, 'master')
  // the lease was replicated before the kill, so it is still held
  let leader = null
  await waitFor('the lock to answer after the failover', async () => {
    try {
      leader = await lock.acquire('leader', 60_000)
      return true
    } catch {
      return false // Unavailable until the lock's own connection follows
    }
  }, 5000, POLL_MS)
  assert.equal(leader, null)
  t.diagnostic(`cache write pause after master kill: ${pause} ms`)
})
