// File metadata reads through the cache: one entry per file holds its record
// and the nodes holding its blob, so a download costs one cache read and, with
// a shared cache, one primary-key read of the record.
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
//
// The cache never overrules the metadata store on whether a link is alive
// (issue 8). An invalidation sent to a shared cache can be lost: Redis
// unreachable from this gateway at that moment, or a DEL acknowledged by a
// master that then died before its replicas had it. So with a cache that is
// not `coherent` (Redis), a hit is confirmed: the record is read again from
// the primary (one primary-key read) and only the replicas come from the
// entry. An entry showing a dead link alive is dropped for every gateway.
// The embedded cache is coherent (one process: a delete cannot be lost), and
// its hits are believed as they are.
//
// What holds:
// - Once a DELETE's 204 is sent, or the claim that used up a limited link
//   returned, no download, HEAD or variant of the link that starts on any
//   gateway is served, whatever the cache missed.
// - The limit is decided by the claim in the metadata store, which checks
//   deletion, expiry and the count in one statement; expiry by expires_at,
//   which no change touches, on the gateway's clock.
// - While the metadata store is away (a confirming read failed or took over
//   CONFIRM_WAIT_MS; until a read answers again) a hit is served as the
//   entry says (downloads go on from the cache during a database pause, issue
//   13, or a failover), except that a link that died through this gateway stays dead here:
//   the gateway remembers those for longer than any entry read before the
//   death can live (FILL_WINDOW_MS + TTL).
// What does not hold:
// - With the store unreachable and an invalidation lost, another gateway may
//   serve an unlimited link deleted through this one, until the store is back
//   or the entry lapses. Nothing can be deleted while the store is away; a
//   store so loaded that a read takes over CONFIRM_WAIT_MS counts as away.
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
/** How long a hit waits for the primary to confirm it before the store counts as away. */
const CONFIRM_WAIT_MS = 1000
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
        const confirmed = await confirm(id, revive(found.value))
        if (confirmed.stale) await cache.delete(key)
        if (confirmed.entry !== null) return confirmed.entry
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
  /**
   * What a hit may answer: the entry, or with a cache that can lose
   * invalidations the primary's record with the entry's replicas. `stale`:
   * the entry shows the link alive though it died, drop it. `entry` null:
   * read it all from the store.
   */
  async function confirm(id: string, entry: FileEntry): Promise<{ entry: FileEntry | null; stale: boolean }> {
    const diedHere = showsAlive(entry.file) && deaths.has(id)
    const file = cache.coherent ? 'unconfirmed' : await readBounded(id)
    // unconfirmed (the store away, or a coherent cache): the entry stands, but for links that died here
    if (file === 'unconfirmed') return diedHere ? { entry: null, stale: true } : { entry, stale: false }
    if (file === null) return { entry: null, stale: true }
    return { entry: { file, replicas: entry.replicas }, stale: showsAlive(entry.file) && !showsAlive(file) }
  }

  // A read that takes longer than CONFIRM_WAIT_MS counts as the store away
  // (a pause, a failover: its reads wait for seconds), and until a read
  // answers again hits are not confirmed: one read at a time finds out (the
  // late one itself, or the next hit's), so a pause slows the first
  // downloads by CONFIRM_WAIT_MS, not every one, nor one per second of it.
  let away = false
  let returning: Promise<void> | null = null
  function awayUntilAnswered(read: Promise<unknown> | null): void {
    away = true
    if (read === null || returning !== null) return
    returning = read.then(
      () => {
        away = false
      },
      () => undefined, // still away: the next hit asks again
    ).finally(() => {
      returning = null
    })
  }
  async function readBounded(id: string): Promise<FileRecord | null | 'unconfirmed'> {
    if (away) {
      if (returning === null) awayUntilAnswered(metadata.getFile(id))
      return 'unconfirmed'
    }
    let timer: NodeJS.Timeout | undefined
    const read = metadata.getFile(id)
    const late = new Promise<'unconfirmed'>((resolve) => {
      timer = setTimeout(resolve, CONFIRM_WAIT_MS, 'unconfirmed')
    })
    try {
      const file = await Promise.race([read, late])
      if (file === 'unconfirmed') awayUntilAnswered(read)
      return file
    } catch (err) {
      if (!(err instanceof Unavailable)) throw err
      awayUntilAnswered(null)
      return 'unconfirmed'
    } finally {
      clearTimeout(timer)
    }
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
