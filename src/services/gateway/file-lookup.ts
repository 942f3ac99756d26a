// File metadata reads through the cache: one entry per file holds its record
// and the nodes holding its blob, so a download costs one cache read. Every
// change to a file or its replicas goes through invalidate(); a lost
// invalidation (cache down) is bounded by the TTL. Nothing that enforces a
// rule trusts the cache alone: limited downloads are claimed in the metadata
// store, and a stale replica list only costs a read that finds no copy there
// and moves to the next replica.
import type { FileRecord } from '../../core/file.ts'
import type { Cache, MetadataStore } from '../../ports.ts'

export interface FileEntry {
  file: FileRecord
  /** nodes holding the file's blob */
  replicas: string[]
}

export interface FileLookup {
  get(id: string): Promise<FileEntry | null>
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
      if (file === null) return null
      const entry = { file, replicas: await metadata.listReplicas(file.blobKey) }
      await cache.set(cacheKey(id), JSON.stringify(entry), ttlMs)
      return entry
    },
    async invalidate(id) {
      await cache.delete(cacheKey(id))
    },
  }
}

function revive(json: string): FileEntry {
  const entry = JSON.parse(json) as { file: Record<string, unknown>; replicas: string[] }
  for (const field of DATE_FIELDS) {
    const v = entry.file[field]
    entry.file[field] = typeof v === 'string' ? new Date(v) : null
  }
  return entry as unknown as FileEntry
}
