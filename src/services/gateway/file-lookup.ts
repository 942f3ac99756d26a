// File metadata reads through the cache. Every change to a file goes through
// invalidate(); a lost invalidation (cache down) is bounded by the TTL, and
// nothing that enforces a rule (expiry, limits, passwords on download) trusts
// the cache alone: claims go to the metadata store.
import type { FileRecord } from '../../core/file.ts'
import type { Cache, MetadataStore } from '../../ports.ts'

export interface FileLookup {
  get(id: string): Promise<FileRecord | null>
  invalidate(id: string): Promise<void>
  /**
   * The nodes holding a blob. A stale list is harmless for a read (a node
   * that lost its copy answers 404 and the next replica is tried), so it is
   * cached briefly; whoever adds a replica invalidates it.
   */
  replicas(blobKey: string): Promise<string[]>
  invalidateReplicas(blobKey: string): Promise<void>
}

const REPLICAS_TTL_MS = 5000

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
    async replicas(blobKey) {
      const hit = await cache.get(`replicas:${blobKey}`)
      if (hit !== null) return JSON.parse(hit) as string[]
      const nodeIds = await metadata.listReplicas(blobKey)
      if (nodeIds.length > 0) await cache.set(`replicas:${blobKey}`, JSON.stringify(nodeIds), REPLICAS_TTL_MS)
      return nodeIds
    },
    async invalidateReplicas(blobKey) {
      await cache.delete(`replicas:${blobKey}`)
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
