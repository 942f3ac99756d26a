// Cache contract, run against the embedded cache and Redis on 127.0.0.1:6379.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:net'
import { Writable } from 'node:stream'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { createLogger } from '../../src/log.ts'
import type { Cache } from '../../src/ports.ts'
import { createEmbeddedCache } from '../../src/adapters/embedded/cache.ts'
import { createRedisCache } from '../../src/adapters/redis/cache.ts'

const REDIS_URL = 'redis://127.0.0.1:6379'
const silent = createLogger('silent')

/** Waits until `check` holds, polling; fails after `ms`. */
async function until(check: () => Promise<boolean>, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

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
      await until(async () => (await cache.get('short')) === null)
      assert.equal(await cache.get('long'), 'y')
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
  const port = await closedPort()
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

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const address = server.address()
  await new Promise((r) => server.close(r))
  assert.ok(address && typeof address === 'object')
  return address.port
}
