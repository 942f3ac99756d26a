// Downloads of links without a limit need no atomic claim, so they are not
// written on the download path: the gateway adds them up and writes them in
// one statement per interval (and on close). A crash loses at most one
// interval of counts of unlimited links, which enforce nothing. A batch keeps
// its receipt until it is written: one that failed with its outcome unknown
// (a failover took the answer) is sent again under the same receipt, which
// the store applies once.
import { randomUUID } from 'node:crypto'
import type { Logger } from '../../log.ts'
import type { MetadataStore } from '../../ports.ts'

export interface DownloadTally {
  add(fileId: string): void
  /** Writes what was counted; called on every interval and on close. */
  flush(): Promise<void>
  close(): Promise<void>
}

/** batches kept for another try while the store is away; beyond, the oldest counts are given up */
const MAX_PENDING_BATCHES = 120

export function createDownloadTally(metadata: MetadataStore, log: Logger, intervalMs = 1000): DownloadTally {
  let counts = new Map<string, number>()
  let pending: { receipt: string; counts: Map<string, number> }[] = []
  let flushing: Promise<void> | null = null
  const timer = setInterval(() => void tally.flush(), intervalMs)
  timer.unref()

  async function writePending(): Promise<void> {
    while (pending[0] !== undefined) {
      const batch = pending[0]
      try {
        await metadata.addDownloads(batch.counts, batch.receipt)
      } catch (err) {
        log.warn({ err, batches: pending.length }, 'download counts not written; keeping them for the next try')
        return
      }
      pending.shift()
    }
  }

  const tally: DownloadTally = {
    add(fileId) {
      counts.set(fileId, (counts.get(fileId) ?? 0) + 1)
    },
    async flush() {
      if (counts.size > 0) {
        pending.push({ receipt: randomUUID(), counts })
        counts = new Map()
        if (pending.length > MAX_PENDING_BATCHES) {
          log.warn({ dropped: pending.length - MAX_PENDING_BATCHES }, 'download counts given up: the metadata store was away too long')
          pending = pending.slice(-MAX_PENDING_BATCHES)
        }
      }
      // one writer at a time, so a batch is never in flight twice
      flushing ??= writePending().finally(() => (flushing = null))
      await flushing
    },
    async close() {
      clearInterval(timer)
      await tally.flush()
    },
  }
  return tally
}
