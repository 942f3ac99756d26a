// The RateLimiter port on Redis (or Redis Sentinel): one token bucket per
// key, `<ns>:rate:<key>`, taken in one Lua script (rate-limit.lua), so every
// gateway shares the same buckets. No retry of a take whose reply was lost:
// replayed after a reconnect it would count twice (INFRA-NOTES); the caller
// gets Unavailable and decides.
import { readFileSync } from 'node:fs'
import { Unavailable } from '../../core/errors.ts'
import type { RateLimiter } from '../../ports.ts'
import { connectRedis, createGuard, type RedisConnectionOptions } from './connection.ts'

const script = readFileSync(new URL('./rate-limit.lua', import.meta.url), 'utf8')

interface RateCommands {
  mayflyRateTake(key: string, count: number, windowMs: number, cost: number): Promise<[number, number]>
}

export function createRedisRateLimiter(opts: RedisConnectionOptions): RateLimiter {
  const conn = connectRedis(opts, 'rate-limit')
  const guard = createGuard(conn, opts.log.child({ adapter: 'redis-rate-limit' }), 'redis rate limiter')
  conn.client.defineCommand('mayflyRateTake', { numberOfKeys: 1, lua: script })
  const commands = conn.client as unknown as RateCommands
  return {
    async take(key, limit, cost = 1) {
      try {
        const [allowed, retryAfterMs] = await guard(() =>
          commands.mayflyRateTake(`${opts.namespace}:rate:${key}`, limit.count, Math.max(1, Math.round(limit.windowMs)), cost),
        )
        return { allowed: Number(allowed) === 1, retryAfterMs: Number(retryAfterMs) }
      } catch (err) {
        throw new Unavailable('rate limiter unavailable', 'unavailable', { cause: err })
      }
    },
    async close() {
      conn.close()
    },
  }
}
