// The Cache port on Redis (or Redis Sentinel). It never throws: an error is
// a miss or a dropped write, logged once per outage. Keys: `<ns>:cache:<key>`.
import type { Cache, DependencyStatus } from '../../ports.ts'
import { connectRedis, createGuard, redisStatus, type RedisConnectionOptions } from './connection.ts'

export type RedisCacheOptions = RedisConnectionOptions

export function createRedisCache(opts: RedisCacheOptions): Cache {
  // One retry: GET, SET and DEL are idempotent, so a command caught by a
  // dropped connection may be sent once more after the reconnect.
  const conn = connectRedis(opts, { name: 'cache', maxRetriesPerRequest: 1 })
  const { client } = conn
  const guard = createGuard(conn, opts.log.child({ adapter: 'redis-cache' }), 'redis cache')
  const k = (key: string) => `${opts.namespace}:cache:${key}`

  /** the port never throws: a failed command is a miss or a dropped write */
  async function guarded<T>(fallback: T, run: () => Promise<T>): Promise<T> {
    return guard(run).catch(() => fallback)
  }

  return {
    get: (key) => guarded(null, () => client.get(k(key))),
    set: (key, value, ttlMs) =>
      guarded(undefined, async () => {
        await client.set(k(key), value, 'PX', Math.max(1, Math.ceil(ttlMs)))
      }),
    delete: (key) =>
      guarded(undefined, async () => {
        await client.del(k(key))
      }),
    status: (): Promise<DependencyStatus> => redisStatus(conn, 'redis', 'cache'),
    async close() {
      conn.close()
    },
  }
}
