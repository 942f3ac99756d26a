// File metadata reads through the cache: one entry per file holds its record
// and the nodes holding its blob, so a download costs one cache read.
//
// How an entry stays true (issue 7, bug 2: a fill racing a DELETE wrote the
// live record back, and the deleted link was served for the whole TTL):
// - A miss reads the file from the metadata store's primary (getFile never
//   asks a read replica: one that lags behind a DELETE would fill the cache
//   with a live record) and fills the cache with its lookup's ticket, so a
//   fill whose read may predate an invalidated change is refused (the Cache
//   port's lookup/fill protocol).
// - Every change to a file or its replicas is made in the metadata store
//   first and invalidate()d after: a deletion, a claimed or refunded download
//   of a limited link, a late replica recorded.
// - The gateway remembers, for longer than any entry read before a death can
//   live (FILL_WINDOW_MS + TTL), the links that died through it (deleted, or
//   used up by a claim). An entry showing such a link alive is not believed:
//   the primary decides, and the entry is dropped for every gateway.
//
// What holds:
// - Once a DELETE's 204 is sent, no download, HEAD or variant that starts on
//   the same gateway is served, even if the invalidation was lost (Redis down
//   at that moment, a write lost in a Sentinel failover). The same after the
//   claim that used up a limited link.
// - On other gateways the same holds as long as the invalidation reached the cache.
// - The cache never decides a limited link's download: each is claimed in the
//   metadata store, which checks deletion, expiry and the limit in one statement.
// - Expiry: expires_at never changes, so an entry tells it as the database
//   would; the gateway's clock decides either way.
// What does not hold:
// - With a lost invalidation, another gateway may serve an unlimited link that
//   was deleted (and HEAD or the variants of any dead link) until its entry
//   lapses: at most FILL_WINDOW_MS + the TTL after the change. A missed
//   invalidation is bounded, not prevented, across gateways.
// - A lost invalidation after a refund may show a link used up for as long:
//   that errs towards 410, never towards serving.
// - Downloads of unlimited links are counted in batches (download-tally.ts)
//   and invalidate nothing (entries stay, so downloads go on from the cache
//   while the metadata store is away): an entry's `downloads` may lag by the
//   TTL. Views that show the count (file info, the share page) read current(),
//   the primary's record, so every gateway shows the same count (issue 13).
import { performance } from 'node:perf_hooks'
import type { FileRecord } from '../../core/file.ts'
import { Unavailable } from '../../core/errors.ts'
import type { Cache, MetadataStore } from '../../ports.ts'

export interface FileEntry {
  file: FileRecord
  /** nodes holding the file's blob */
  replicas: string[]
}

export interface FileLookup {
  /** The file and its replicas (null when the id is unknown): the cache's entry, else the primary's record, then cached. */
  get(id: string): Promise<FileEntry | null>
  /**
   * Call after the file or its replicas changed in the metadata store. Once it
   * returns, get() on this gateway, and on every gateway while the cache is
   * reachable, no longer answers the state from before the change. `died`:
   * the change killed the link (deleted, used up, or a claim found it dead),
   * which this gateway then enforces even if the cache missed the invalidation.
   */
  invalidate(id: string, change?: { died: boolean }): Promise<void>
  /**
   * The primary's record of the file, cache untouched: for views that show
   * counts. The cached entry's file when the metadata store is unavailable.
   */
  current(id: string): Promise<FileRecord | null>
}

/** How long after its lookup a fill may still land: the read of a miss takes milliseconds, or seconds in a failover. */
const FILL_WINDOW_MS = 5000
/** Links that died here, remembered at most (beyond it, no entry showing a link alive is believed for a window). */
const MAX_DEATHS = 100_000

const DATE_FIELDS = ['createdAt', 'expiresAt', 'deletedAt', 'exhaustedAt', 'purgedAt'] as const

export function createFileLookup(metadata: MetadataStore, cache: Cache, ttlMs: number): FileLookup {
  const cacheKey = (id: string) => `file:${id}`
  // An entry read before a death was filled by FILL_WINDOW_MS after it at the
  // latest and lapses ttlMs later; a second covers commands in flight.
  const deaths = createRecentDeaths(FILL_WINDOW_MS + ttlMs + 1000, MAX_DEATHS)
  const lookup: FileLookup = {
    async get(id) {
      const key = cacheKey(id)
      const found = await cache.lookup(key, FILL_WINDOW_MS)
      if (found.hit) {
        const entry = revive(found.value)
        if (!(showsAlive(entry.file) && deaths.has(id))) return entry
        // a link that died here shown alive: an invalidation was lost
        await cache.delete(key)
      }
      const file = await metadata.getFile(id)
      if (file === null) return null
      const entry = { file, replicas: await metadata.listReplicas(file.blobKey) }
      if (!found.hit && found.ticket !== null) await cache.fill(key, found.ticket, JSON.stringify(entry), ttlMs)
      return entry
    },
    async invalidate(id, change) {
      // remembered before the cache is touched: from here on this gateway believes no live entry of it
      if (change?.died === true) deaths.add(id)
      await cache.delete(cacheKey(id))
    },
    async current(id) {
      try {
        return await metadata.getFile(id)
      } catch (err) {
        if (!(err instanceof Unavailable)) throw err
        const cached = await lookup.get(id).catch(() => null)
        if (cached === null) throw err
        return cached.file
      }
    },
  }
  return lookup
}

/** Neither deleted nor used up (expiry is read from expires_at, which no change touches). */
function showsAlive(file: FileRecord): boolean {
  return file.deletedAt === null && file.purgedAt === null && (file.maxDownloads === null || file.downloads < file.maxDownloads)
}

/**
 * Ids remembered for windowMs on a monotonic clock. Every id gets the same
 * window, so the Map's insertion order is expiry order and pruning stops at
 * the first live one. Past `max` ids the oldest are forgotten, and to stay on
 * the safe side every id counts as remembered for a window.
 */
function createRecentDeaths(windowMs: number, max: number, clock: () => number = () => performance.now()) {
  const until = new Map<string, number>()
  let everyoneUntil = -Infinity
  const prune = (now: number) => {
    for (const [id, end] of until) {
      if (end > now) break
      until.delete(id)
    }
  }
  return {
    add(id: string): void {
      const now = clock()
      prune(now)
      until.delete(id)
      until.set(id, now + windowMs)
      if (until.size > max) {
        everyoneUntil = now + windowMs
        for (const old of until.keys()) {
          if (until.size <= max) break
          until.delete(old)
        }
      }
    },
    has(id: string): boolean {
      const now = clock()
      return now < everyoneUntil || (until.get(id) ?? -Infinity) > now
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
