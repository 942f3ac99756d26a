// Downloads of links without a limit need no atomic claim, so they are not
// written on the download path: the gateway adds them up and writes them in
// one statement per interval (and on close). A crash loses at most one
// interval of counts of unlimited links, which enforce nothing.
import type { Logger } from '../../log.ts'
import type { MetadataStore } from '../../ports.ts'

export interface DownloadTally {
  add(fileId: string): void
  /** Writes what was counted; called on every interval and on close. */
  flush(): Promise<void>
  close(): Promise<void>
}

export function createDownloadTally(metadata: MetadataStore, log: Logger, intervalMs = 1000): DownloadTally {
  let counts = new Map<string, number>()
  const timer = setInterval(() => void tally.flush(), intervalMs)
  timer.unref()
  const tally: DownloadTally = {
    add(fileId) {
      counts.set(fileId, (counts.get(fileId) ?? 0) + 1)
    },
    async flush() {
      if (counts.size === 0) return
      const batch = counts
      counts = new Map()
      try {
        await metadata.addDownloads(batch)
      } catch (err) {
        log.warn({ err, files: batch.size }, 'download counts not written; keeping them for the next try')
        for (const [id, n] of batch) counts.set(id, (counts.get(id) ?? 0) + n)
      }
    },
    async close() {
      clearInterval(timer)
      await tally.flush()
    },
  }
  return tally
}
