// The Cache port in one process: a Map with per-entry expiry and a size
// bound. Map keeps insertion order, so re-inserting on every hit makes the
// first entry the least recently used one, which is what goes when full.
// A key holds a value or a reservation (the ticket of a miss, see the port);
// both count against the bound, and evicting a reservation only fails its fill.
import { randomUUID } from 'node:crypto'
import type { Cache, DependencyStatus } from '../../ports.ts'

export interface EmbeddedCacheOptions {
  /** entries kept at most (default 10,000) */
  maxEntries?: number
  /** the clock, for tests (default Date.now) */
  now?: () => number
}

type Entry = { kind: 'value'; value: string; expiresAt: number } | { kind: 'reserved'; ticket: string; expiresAt: number }

export function createEmbeddedCache(opts: EmbeddedCacheOptions = {}): Cache {
  const maxEntries = opts.maxEntries ?? 10_000
  const now = opts.now ?? Date.now
  const entries = new Map<string, Entry>()

  /** The live entry of `key`, now the most recently used; lapsed ones go. */
  function touch(key: string): Entry | undefined {
    const e = entries.get(key)
    if (!e) return undefined
    entries.delete(key)
    if (e.expiresAt <= now()) return undefined
    entries.set(key, e)
    return e
  }

  function put(key: string, entry: Entry): void {
    entries.delete(key)
    entries.set(key, entry)
    while (entries.size > maxEntries) {
      const oldest = entries.keys().next()
      if (oldest.done) break
      entries.delete(oldest.value)
    }
  }

  // Every method runs to completion without awaiting, so each is atomic
  // against the others, as the Lua scripts of the Redis adapter are.
  return {
    coherent: true,
    async get(key) {
      const e = touch(key)
      return e?.kind === 'value' ? e.value : null
    },
    async lookup(key, reserveMs) {
      const e = touch(key)
      if (e?.kind === 'value') return { hit: true, value: e.value }
      if (e?.kind === 'reserved') return { hit: false, ticket: e.ticket }
      const ticket = randomUUID()
      put(key, { kind: 'reserved', ticket, expiresAt: now() + reserveMs })
      return { hit: false, ticket }
    },
    async fill(key, ticket, value, ttlMs) {
      const e = touch(key)
      if (e?.kind !== 'reserved' || e.ticket !== ticket) return false
      put(key, { kind: 'value', value, expiresAt: now() + ttlMs })
      return true
    },
    async set(key, value, ttlMs) {
      put(key, { kind: 'value', value, expiresAt: now() + ttlMs })
    },
    async delete(key) {
      entries.delete(key)
    },
    async status(): Promise<DependencyStatus> {
      return { name: 'cache', kind: 'embedded', ok: true, detail: { entries: entries.size, maxEntries } }
    },
    async close() {
      entries.clear()
    },
  }
}
