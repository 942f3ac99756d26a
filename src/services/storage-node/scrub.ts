// Scrub (DESIGN §6, MAYFLY_SCRUB_INTERVAL_SECONDS): the node re-reads every
// blob it holds once per period, at an even pace, through the same verified
// reader as a GET (every block's CRC32), asking it to check the whole blob's
// sha256 too; the reader quarantines a damaged blob. A quarantined blob
// leaves the inventory, so anti-entropy restores the copy. A blob still in the format before block checksums
// (MAYFLYB1) is verified by its sha256 and rewritten with them.
import { DamagedBlob } from '../../core/errors.ts'
import { createPauses } from '../../core/pauses.ts'
import type { Logger } from '../../log.ts'
import type { BlobFiles } from './blob-files.ts'

export interface Scrubber {
  /** Stops after the blob being read; resolves when it has. */
  stop(): Promise<void>
}

/** Shortest pause between two blobs, so a tiny node does not spin. */
const MIN_PAUSE_MS = 20
const EMPTY_RECHECK_MS = 60_000

export function startScrubber(options: { files: BlobFiles; intervalMs: number; log: Logger }): Scrubber {
  const { files, intervalMs, log } = options
  let stopped = false
  const pauses = createPauses()
  const pause = (ms: number) => pauses.sleep(ms)

  async function check(key: string): Promise<void> {
    const blob = await files.open(key)
    if (blob === null) return // deleted meanwhile, or already quarantined by open()
    if (blob.format === 1) {
      await blob.close()
      await files.upgrade(key)
      return
    }
    const body = await blob.read(undefined, { sha256: true })
    if (Buffer.isBuffer(body)) return
    for await (const _chunk of body) {
      if (stopped) return // leaving the loop closes the file
    }
  }

  async function loop(): Promise<void> {
    while (!stopped) {
      let after = ''
      let checked = 0
      const started = Date.now()
      // one pass: every blob, spread over the interval
      for (;;) {
        const { blobs, more } = await files.list(after, 100)
        for (const { key } of blobs) {
          await pause(Math.max(MIN_PAUSE_MS, intervalMs / Math.max(1, files.stats().blobCount)))
          if (stopped) return
          await check(key).catch((err: unknown) => {
            // damage is quarantined and logged by the reader
            if (!(err instanceof DamagedBlob)) log.warn({ err, key }, 'scrub could not read a blob')
          })
          checked++
          after = key
        }
        if (!more) break
      }
      log.debug({ checked, ms: Date.now() - started }, 'scrub pass done')
      // wait out the rest of the period; an empty node looks again every minute for new blobs
      const rest = Math.max(MIN_PAUSE_MS, intervalMs - (Date.now() - started))
      await pause(checked === 0 ? Math.min(rest, EMPTY_RECHECK_MS) : rest)
    }
  }

  const running = loop().catch((err: unknown) => log.error({ err }, 'scrub stopped'))
  return {
    async stop() {
      stopped = true
      pauses.wake()
      await running
    },
  }
}
