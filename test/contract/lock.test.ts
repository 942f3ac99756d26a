// Lock contract, run against the embedded lock and Redis on 127.0.0.1:6379.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import { createLogger } from '../../src/log.ts'
import type { Lease, Lock } from '../../src/ports.ts'
import { Unavailable } from '../../src/core/errors.ts'
import { createEmbeddedLock } from '../../src/adapters/embedded/lock.ts'
import { createRedisLock } from '../../src/adapters/redis/lock.ts'

const REDIS_URL = 'redis://127.0.0.1:6379'
const silent = createLogger('silent')

async function deleteNamespace(ns: string): Promise<void> {
  const r = new Redis(REDIS_URL)
  const keys = await r.keys(`${ns}:*`)
  if (keys.length > 0) await r.del(...keys)
  await r.quit()
}

/** Two clients of one lock service: in Redis two connections, embedded one shared instance. */
const adapters: { name: string; make: (ns: string) => [Lock, Lock]; cleanup: (ns: string) => Promise<void> }[] = [
  {
    name: 'embedded',
    make: () => {
      const lock = createEmbeddedLock()
      return [lock, lock]
    },
    cleanup: async () => {},
  },
  {
    name: 'redis',
    make: (ns) => [
      createRedisLock({ url: REDIS_URL, namespace: ns, log: silent }),
      createRedisLock({ url: REDIS_URL, namespace: ns, log: silent }),
    ],
    cleanup: deleteNamespace,
  },
]

/** Polls until the lease is free and taken. */
async function acquireSoon(lock: Lock, name: string, ttlMs: number, ms = 2000): Promise<Lease> {
  const deadline = Date.now() + ms
  for (;;) {
    const lease = await lock.acquire(name, ttlMs)
    if (lease) return lease
    if (Date.now() > deadline) assert.fail(`${name} not acquired in time`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

for (const a of adapters) {
  describe(`lock contract: ${a.name}`, () => {
    const setup = (t: { after: (fn: () => Promise<void>) => void }) => {
      const ns = `t-${randomUUID().slice(0, 8)}`
      const locks = a.make(ns)
      t.after(async () => {
        await Promise.all([...new Set(locks)].map((l) => l.close()))
        await a.cleanup(ns)
      })
      return locks
    }

    test('a lease is exclusive per name', async (t) => {
      const [l1, l2] = setup(t)
      const lease = await l1.acquire('leader', 10_000)
      assert.ok(lease)
      assert.equal(lease.name, 'leader')
      assert.ok(lease.token > 0)
      assert.equal(await l2.acquire('leader', 10_000), null)
      assert.ok(await l2.acquire('other', 10_000), 'another name is independent')
    })

    test('of many concurrent acquirers exactly one wins', async (t) => {
      const [l1, l2] = setup(t)
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? l1 : l2).acquire('race', 10_000)))
      assert.equal(results.filter((r) => r !== null).length, 1)
    })

    test('a lease lapses after its TTL; the next holder gets a larger token', async (t) => {
      const [l1, l2] = setup(t)
      const first = await l1.acquire('job', 80)
      assert.ok(first)
      assert.equal(await l2.acquire('job', 10_000), null)
      const second = await acquireSoon(l2, 'job', 10_000)
      assert.ok(second.token > first.token, `${second.token} > ${first.token}`)
      assert.equal(await first.renew(), false, 'renew after loss')
    })

    test('renew keeps the lease past its first TTL', async (t) => {
      const [l1, l2] = setup(t)
      const lease = await l1.acquire('kept', 150)
      assert.ok(lease)
      const until = Date.now() + 400
      while (Date.now() < until) {
        assert.equal(await lease.renew(), true)
        assert.equal(await l2.acquire('kept', 150), null)
        await new Promise((r) => setTimeout(r, 50))
      }
    })

    test('release frees the lease, only if ours, and is idempotent', async (t) => {
      const [l1, l2] = setup(t)
      const old = await l1.acquire('r', 60)
      assert.ok(old)
      const current = await acquireSoon(l2, 'r', 10_000)
      await old.release() // lapsed and taken: must not free the new holder's lease
      assert.equal(await l1.acquire('r', 10_000), null)
      await current.release()
      await current.release()
      assert.equal(await current.renew(), false, 'renew after release')
      const next = await l1.acquire('r', 10_000)
      assert.ok(next)
      assert.ok(next.token > current.token)
    })
  })
}

test('redis lock: an unreachable Redis throws Unavailable quickly', async (t) => {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const address = server.address()
  await new Promise((r) => server.close(r))
  assert.ok(address && typeof address === 'object')
  const lock = createRedisLock({ url: `redis://127.0.0.1:${address.port}`, namespace: 't-down', log: silent, connectTimeoutMs: 200, reconnectDelayMs: 20 })
  t.after(() => lock.close())
  const started = Date.now()
  for (let i = 0; i < 5; i++) await assert.rejects(lock.acquire('x', 1000), Unavailable)
  assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`)
})
