// File metadata reads through the cache. Every change to a file goes through
// invalidate(); a lost invalidation (cache down) is bounded by the TTL, and
// nothing that enforces a rule (expiry, limits, passwords on download) trusts
// the cache alone: claims go to the metadata store.
import type { FileRecord } from '../../core/file.ts'
import type { Cache, MetadataStore } from '../../ports.ts'

export interface FileLookup {
  get(id: string): Promise<FileRecord | null>
  invalidate(id: string): Promise<void>
}

const DATE_FIELDS = ['createdAt', 'expiresAt', 'deletedAt', 'exhaustedAt', 'purgedAt'] as const

export function createFileLookup(metadata: MetadataStore, cache: Cache, ttlMs: number): FileLookup {
  const cacheKey = (id: string) => `file:${id}`
  return {
    async get(id) {
      const hit = await cache.get(cacheKey(id))
      if (hit !== null) return revive(hit)
      const file = await metadata.getFile(id)
      if (file !== null) await cache.set(cacheKey(id), JSON.stringify(file), ttlMs)
      return file
    },
    async invalidate(id) {
      await cache.delete(cacheKey(id))
    },
  }
}

function revive(json: string): FileRecord {
  const raw = JSON.parse(json) as Record<string, unknown>
  for (const field of DATE_FIELDS) {
    const v = raw[field]
    raw[field] = typeof v === 'string' ? new Date(v) : null
  }
  return raw as unknown as FileRecord
}
