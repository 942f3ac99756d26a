// The Lock port on Redis: one key per lease holding the holder's fencing
// token, taken with SET NX PX semantics in a Lua script that also INCRs a
// per-name counter, so tokens grow with every acquisition. Renew and release
// compare the token first. A Redis lease is only a lease: the work it
// protects must be idempotent or check the token (STYLE.md, "Ports").
//
// Redis replication is asynchronous, so a Sentinel failover can lose the
// newest lease: it may then be granted twice for up to its TTL. Tokens still
// grow (lock-acquire.lua takes the master's clock), so whatever a lease
// guards must check the token where the write lands (the sweeper's deletes
// carry it to the storage nodes, which refuse a lower one than they saw).
import { readFileSync } from 'node:fs'
import type { Lease, Lock } from '../../ports.ts'
import { Unavailable } from '../../core/errors.ts'
import { connectRedis, createGuard, type RedisConnectionOptions } from './connection.ts'

export type RedisLockOptions = RedisConnectionOptions

const script = (file: string) => readFileSync(new URL(file, import.meta.url), 'utf8')

interface LockCommands {
  mayflyLockAcquire(lease: string, fence: string, ttlMs: number): Promise<number>
  mayflyLockRenew(lease: string, token: number, ttlMs: number): Promise<number>
  mayflyLockRelease(lease: string, token: number): Promise<number>
}

export function createRedisLock(opts: RedisLockOptions): Lock {
  // No retry of a command whose reply was lost: the caller gets Unavailable
  // and decides; a replayed acquire would take a lease nobody knows about.
  const conn = connectRedis(opts, 'lock')
  const { client } = conn
  const log = opts.log.child({ adapter: 'redis-lock' })
  const guard = createGuard(conn, log, 'redis lock')
  client.defineCommand('mayflyLockAcquire', { numberOfKeys: 2, lua: script('./lock-acquire.lua') })
  client.defineCommand('mayflyLockRenew', { numberOfKeys: 1, lua: script('./lock-renew.lua') })
  client.defineCommand('mayflyLockRelease', { numberOfKeys: 1, lua: script('./lock-release.lua') })
  const commands = client as unknown as LockCommands
  const leaseKey = (name: string) => `${opts.namespace}:lock:${name}`

  async function call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await guard(run)
    } catch (err) {
      throw new Unavailable(`lock backend unavailable (${what})`, 'unavailable', { cause: err })
    }
  }

  return {
    async acquire(name, ttlMs) {
      const ttl = Math.max(1, Math.ceil(ttlMs))
      const key = leaseKey(name)
      const token = Number(await call('acquire', () => commands.mayflyLockAcquire(key, `${key}:fence`, ttl)))
      if (token === 0) return null
      let released = false
      const lease: Lease = {
        name,
        token,
        async renew() {
          if (released) return false
          return Number(await call('renew', () => commands.mayflyLockRenew(key, token, ttl))) === 1
        },
        async release() {
          if (released) return
          try {
            await call('release', () => commands.mayflyLockRelease(key, token))
            released = true
          } catch (err) {
            // Best effort: a lease we could not delete lapses after its TTL.
            log.debug({ err, name }, 'release failed; the lease will lapse')
          }
        },
      }
      return lease
    },
    async close() {
      conn.close()
    },
  }
}
