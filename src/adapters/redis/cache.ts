// The Cache port on Redis (or Redis Sentinel). It never throws: an error is
// a miss or a dropped write, logged once per outage. Keys: `<ns>:cache:<key>`,
// holding 'v' + the value, or 'r' + a ticket while a miss is being filled
// (the port's lookup/fill protocol; cache-lookup.lua and cache-fill.lua make
// each step atomic).
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Cache, CacheLookup, DependencyStatus } from '../../ports.ts'
import { connectRedis, createGuard, redisStatus, type RedisConnectionOptions } from './connection.ts'

export type RedisCacheOptions = RedisConnectionOptions

const script = (file: string) => readFileSync(new URL(file, import.meta.url), 'utf8')

interface CacheCommands {
  mayflyCacheLookup(key: string, ticket: string, reserveMs: number): Promise<[number, string]>
  mayflyCacheFill(key: string, ticket: string, value: string, ttlMs: number): Promise<number>
}

const VALUE = 'v'
const ms = (n: number) => Math.max(1, Math.ceil(n))

export function createRedisCache(opts: RedisCacheOptions): Cache {
  // A command caught by a dropped connection fails at once (connection.ts) and
  // the caller reads the metadata store. Each would be safe to repeat (GET,
  // SET and DEL are idempotent, a lookup carries its ticket), but a retry
  // waits for the reconnect: with one, every request in flight when the
  // master died stalled for the 500 ms reconnect delay (the bench's timeline).
  const conn = connectRedis(opts, 'cache')
  const { client } = conn
  const guard = createGuard(conn, opts.log.child({ adapter: 'redis-cache' }), 'redis cache')
  client.defineCommand('mayflyCacheLookup', { numberOfKeys: 1, lua: script('./cache-lookup.lua') })
  client.defineCommand('mayflyCacheFill', { numberOfKeys: 1, lua: script('./cache-fill.lua') })
  const commands = client as unknown as CacheCommands
  const k = (key: string) => `${opts.namespace}:cache:${key}`

  /** the port never throws: a failed command is a miss or a dropped write */
  async function guarded<T>(fallback: T, run: () => Promise<T>): Promise<T> {
    return guard(run).catch(() => fallback)
  }

  return {
    // a DEL can be lost (Redis away at that moment, a failover: replication is asynchronous)
    coherent: false,
    get: (key) =>
      guarded(null, async () => {
        const entry = await client.get(k(key))
        return entry?.startsWith(VALUE) ? entry.slice(VALUE.length) : null
      }),
    lookup: (key, reserveMs) =>
      guarded<CacheLookup>({ hit: false, ticket: null }, async () => {
        const [hit, text] = await commands.mayflyCacheLookup(k(key), randomUUID(), ms(reserveMs))
        return hit === 1 ? { hit: true, value: text } : { hit: false, ticket: text }
      }),
    fill: (key, ticket, value, ttlMs) =>
      guarded(false, async () => Number(await commands.mayflyCacheFill(k(key), ticket, value, ms(ttlMs))) === 1),
    set: (key, value, ttlMs) =>
      guarded(undefined, async () => {
        await client.set(k(key), VALUE + value, 'PX', ms(ttlMs))
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
