// The Cache port in one process: a Map with per-entry expiry and a size
// bound. Map keeps insertion order, so re-inserting on every hit makes the
// first entry the least recently used one, which is what goes when full.
import type { Cache, DependencyStatus } from '../../ports.ts'

export interface EmbeddedCacheOptions {
  /** entries kept at most (default 10,000) */
  maxEntries?: number
  /** the clock, for tests (default Date.now) */
  now?: () => number
}

export function createEmbeddedCache(opts: EmbeddedCacheOptions = {}): Cache {
  const maxEntries = opts.maxEntries ?? 10_000
  const now = opts.now ?? Date.now
  const entries = new Map<string, { value: string; expiresAt: number }>()

  return {
    async get(key) {
      const e = entries.get(key)
      if (!e) return null
      entries.delete(key)
      if (e.expiresAt <= now()) return null
      entries.set(key, e)
      return e.value
    },
    async set(key, value, ttlMs) {
      entries.delete(key)
      entries.set(key, { value, expiresAt: now() + ttlMs })
      while (entries.size > maxEntries) {
        const oldest = entries.keys().next()
        if (oldest.done) break
        entries.delete(oldest.value)
      }
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
