// The Lock port in one process, with the Redis lock's semantics: a lease
// lapses after its TTL unless renewed, and every acquisition of a name gets
// a larger fencing token than the one before. Tokens are the clock in ms (or
// one more than the last): a process restarted with a fresh lock still hands
// out tokens above the ones storage nodes remember from before, which a
// counter starting at 1 again would not.
import type { Lease, Lock } from '../../ports.ts'

export interface EmbeddedLockOptions {
  /** the clock, for tests (default Date.now) */
  now?: () => number
}

export function createEmbeddedLock(opts: EmbeddedLockOptions = {}): Lock {
  const now = opts.now ?? Date.now
  const held = new Map<string, { token: number; expiresAt: number }>()
  const fences = new Map<string, number>()

  const holder = (name: string) => {
    const h = held.get(name)
    if (h && h.expiresAt <= now()) {
      held.delete(name)
      return undefined
    }
    return h
  }

  return {
    async acquire(name, ttlMs) {
      if (holder(name)) return null
      const token = Math.max(Math.floor(now()), (fences.get(name) ?? 0) + 1)
      fences.set(name, token)
      held.set(name, { token, expiresAt: now() + ttlMs })
      const lease: Lease = {
        name,
        token,
        async renew() {
          const h = holder(name)
          if (h?.token !== token) return false
          h.expiresAt = now() + ttlMs
          return true
        },
        async release() {
          if (holder(name)?.token === token) held.delete(name)
        },
      }
      return lease
    },
    async close() {
      held.clear()
    },
  }
}
