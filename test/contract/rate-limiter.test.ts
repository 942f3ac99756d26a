// RateLimiter contract, run against the embedded limiter and Redis on
// 127.0.0.1:6379 (two connections, as two gateways would hold).
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createEmbeddedRateLimiter } from '../../src/adapters/embedded/rate-limiter.ts'
import { createRedisRateLimiter } from '../../src/adapters/redis/rate-limiter.ts'
import { Unavailable } from '../../src/core/errors.ts'
import { createLogger } from '../../src/log.ts'
import type { RateLimiter } from '../../src/ports.ts'
import { deleteNamespaceKeys } from '../helpers/redis.ts'

const REDIS_URL = 'redis://127.0.0.1:6379'
const silent = createLogger('silent')

const adapters: { name: string; make: (ns: string) => [RateLimiter, RateLimiter] }[] = [
  {
    name: 'embedded',
    make: () => {
      const one = createEmbeddedRateLimiter()
      return [one, one]
    },
  },
  {
    name: 'redis',
    make: (ns) => [createRedisRateLimiter({ url: REDIS_URL, namespace: ns, log: silent }), createRedisRateLimiter({ url: REDIS_URL, namespace: ns, log: silent })],
  },
]

for (const { name, make } of adapters) {
  describe(`RateLimiter contract: ${name}`, () => {
    const run = (title: string, body: (a: RateLimiter, b: RateLimiter) => Promise<void>) =>
      test(title, async () => {
        const ns = `t-${randomUUID().slice(0, 8)}`
        const [a, b] = make(ns)
        try {
          await body(a, b)
        } finally {
          await a.close()
          await b.close()
          if (name === 'redis') await deleteNamespaceKeys(REDIS_URL, ns)
        }
      })

    run('a bucket holds `count` takes, shared by every client of the limiter; the next is refused with the wait for one token', async (a, b) => {
      const limit = { count: 3, windowMs: 60_000 }
      for (const l of [a, b, a]) assert.deepEqual(await l.take('k', limit), { allowed: true, retryAfterMs: 0 })
      const refused = await b.take('k', limit)
      assert.equal(refused.allowed, false)
      // one token comes back every windowMs / count
      assert.ok(refused.retryAfterMs > 19_000 && refused.retryAfterMs <= 20_000, `retry after ${refused.retryAfterMs} ms`)
      assert.equal((await a.take('other key', limit)).allowed, true, 'buckets are per key')
    })

    run('a refused take takes nothing; a give-back makes room, never above full', async (a, b) => {
      const limit = { count: 2, windowMs: 60_000 }
      await a.take('k', limit)
      await a.take('k', limit)
      for (let i = 0; i < 3; i++) assert.equal((await b.take('k', limit)).allowed, false)
      await a.take('k', limit, -1)
      assert.equal((await b.take('k', limit)).allowed, true, 'the token given back')
      assert.equal((await b.take('k', limit)).allowed, false)
      // giving back to a full bucket keeps it at its size
      for (let i = 0; i < 5; i++) await a.take('full', limit, -1)
      assert.equal((await a.take('full', limit)).allowed, true)
      assert.equal((await a.take('full', limit)).allowed, true)
      assert.equal((await a.take('full', limit)).allowed, false)
    })

    run('tokens come back evenly over the window', async (a) => {
      const limit = { count: 2, windowMs: 400 }
      await a.take('k', limit)
      await a.take('k', limit)
      assert.equal((await a.take('k', limit)).allowed, false)
      await sleep(260) // one token per 200 ms
      assert.equal((await a.take('k', limit)).allowed, true)
      assert.equal((await a.take('k', limit)).allowed, false)
    })
  })
}

test('RateLimiter on an unreachable Redis: Unavailable, at once', async () => {
  const limiter = createRedisRateLimiter({ url: 'redis://127.0.0.1:1', namespace: 't-down', log: silent, connectTimeoutMs: 200 })
  try {
    const started = Date.now()
    await assert.rejects(limiter.take('k', { count: 1, windowMs: 1000 }), Unavailable)
    assert.ok(Date.now() - started < 1500, `answered in ${Date.now() - started} ms`)
  } finally {
    await limiter.close()
  }
})
