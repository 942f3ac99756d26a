// The variant job (DESIGN §1, worker; §5.8, §5.10): `{ fileId }`, published
// after each upload. Reads the original once, makes the pending variants from
// it (variants.ts), writes each ready one as a blob with a key derived from the
// original's (so a redelivered job rewrites the same key) and records every
// outcome. Delivered at least once, so every step is idempotent:
// - a variant already ready, failed or skipped is not made again;
// - a dead file (deleted, expired, exhausted, purged) gets no variant;
// - an image that cannot be decoded is recorded `failed` and the job is done
//   (retrying cannot help, and it is not a poison job);
// - Unavailable from the stores propagates: the queue retries with backoff.
import { Readable } from 'node:stream'
import type { Logger } from '../../log.ts'
import type { BlobStore, JobHandler, MetadataStore, WrittenBlob } from '../../ports.ts'
import { IMAGE_MIME_TYPES, VARIANT_NAMES, diedAt, type FileRecord, type VariantName } from '../../core/file.ts'
import { NotFound, PermanentJobError } from '../../core/errors.ts'
import { derivedKey, isId } from '../../core/ids.ts'
import { makeVariants, type VariantResult } from './variants.ts'

/** Originals larger than this get no variants: they would be held in memory whole while decoding. */
export const DEFAULT_MAX_ORIGINAL_BYTES = 64 * 1024 * 1024

export interface VariantJobDeps {
  metadata: MetadataStore
  blobs: BlobStore
  log: Logger
  /** the largest blob the stores accept (MAYFLY_MAX_UPLOAD_BYTES) */
  maxUploadBytes: number
  maxOriginalBytes?: number
  now?: () => Date
}

export function createVariantJobHandler(deps: VariantJobDeps): JobHandler {
  const { metadata, blobs, log } = deps
  const now = deps.now ?? (() => new Date())
  const maxOriginalBytes = Math.min(deps.maxOriginalBytes ?? DEFAULT_MAX_ORIGINAL_BYTES, deps.maxUploadBytes)

  return async function variantJob(job) {
    const fileId = job.fileId
    if (typeof fileId !== 'string' || !isId(fileId)) {
      throw new PermanentJobError(`a variant job needs a file id, got ${JSON.stringify(job).slice(0, 200)}`)
    }
    const file = await liveFile(fileId)
    if (file === null) return
    const existing = await metadata.listVariants(fileId)
    const pending = VARIANT_NAMES.filter((name) => (existing.find((v) => v.name === name)?.state ?? 'pending') === 'pending')
    if (pending.length === 0) return

    if (!IMAGE_MIME_TYPES.has(file.mime)) {
      await recordAll(file, pending, 'skipped', 'not an image')
      return
    }
    if (file.size > maxOriginalBytes) {
      await recordAll(file, pending, 'skipped', `original too large for variants (over ${formatMiB(maxOriginalBytes)})`)
      return
    }

    let original: Buffer
    try {
      original = await readOriginal(file)
    } catch (err) {
      // no replica holds the original: retrying cannot make the variants
      // (and the pending-variant scan would publish the job again forever)
      if (!(err instanceof NotFound)) throw err
      log.error({ err, fileId, key: file.blobKey }, 'the original is on no replica; variants failed')
      await recordAll(file, pending, 'failed', 'the original could not be found on any storage node')
      return
    }
    const results = await makeVariants(original, file.size, pending)
    // decoding takes a while: a link that died meanwhile gets nothing written
    if ((await liveFile(fileId)) === null) return
    // one after the other, thumbnail first: it is what the share page shows
    for (const result of results) {
      if (!(await record(file, result))) return
    }
  }

  /** The file while its link lives; null when there is nothing to do for it. */
  async function liveFile(fileId: string): Promise<FileRecord | null> {
    const file = await metadata.getFile(fileId)
    if (file === null || file.purgedAt !== null || diedAt(file, now()) !== null) {
      log.debug({ fileId }, 'variant job for a gone file: nothing to do')
      return null
    }
    return file
  }

  /** The original's bytes in one buffer of exactly its size: one allocation, no concatenation. */
  async function readOriginal(file: FileRecord): Promise<Buffer> {
    const replicas = await metadata.listReplicas(file.blobKey)
    const stream = await blobs.open({ key: file.blobKey, size: file.size, sha256: file.sha256 }, replicas)
    const buffer = Buffer.allocUnsafe(file.size)
    let filled = 0
    try {
      for await (const chunk of stream as AsyncIterable<Uint8Array>) {
        if (filled + chunk.length > file.size) throw new Error(`blob ${file.blobKey} is longer than its ${file.size} bytes`)
        buffer.set(chunk, filled)
        filled += chunk.length
      }
    } finally {
      stream.destroy()
    }
    if (filled !== file.size) throw new Error(`blob ${file.blobKey} ended after ${filled} of ${file.size} bytes`)
    return buffer
  }

  async function recordAll(file: FileRecord, names: VariantName[], state: 'skipped' | 'failed', reason: string): Promise<void> {
    for (const name of names) {
      if (!(await record(file, { name, state, reason }))) return
    }
  }

  /** Writes and records one outcome; false when the file was purged meanwhile (stop there). */
  async function record(file: FileRecord, result: VariantResult): Promise<boolean> {
    const fileId = file.id
    if (result.state !== 'ready') {
      log.info({ fileId, variant: result.name, state: result.state, reason: result.reason }, 'variant not made')
      return ignorePurged(metadata.setVariant({ fileId, name: result.name, state: result.state, blob: null, mime: null, reason: result.reason }, []))
    }
    const key = derivedKey(file.blobKey, result.name)
    // pending until setVariant: a worker that dies before that leaves a row the sweeper cleans up
    await metadata.beginBlob(key, now())
    const written = await blobs.write(Readable.from(result.data), { key, maxBytes: deps.maxUploadBytes })
    const blob = { key, size: written.size, sha256: written.sha256 }
    try {
      await metadata.setVariant({ fileId, name: result.name, state: 'ready', blob, mime: result.mime, reason: null }, written.replicas)
    } catch (err) {
      if (err instanceof NotFound) {
        await discard(written)
        return false
      }
      // retried later; the copies stay under the same key, to be overwritten or swept
      written.remaining.catch(() => undefined)
      throw err
    }
    log.debug({ fileId, variant: result.name, key, size: blob.size }, 'variant ready')
    await recordLateReplicas(written)
    return true
  }

  async function ignorePurged(write: Promise<void>): Promise<boolean> {
    try {
      await write
      return true
    } catch (err) {
      if (err instanceof NotFound) return false
      throw err
    }
  }

  /**
   * The copies that landed after the quorum. Awaited so that a job finishes
   * with its writes (a stopping worker leaves none behind); a failure here
   * only leaves the blob under-replicated for a while, which the replicator
   * repairs, so it is logged and the job still succeeds.
   */
  async function recordLateReplicas(written: WrittenBlob): Promise<void> {
    try {
      for (const nodeId of await written.remaining) {
        try {
          await metadata.addReplica(written.key, nodeId)
        } catch (err) {
          // the file was purged meanwhile: this copy belongs to nobody
          if (err instanceof NotFound) await blobs.remove(written.key, [nodeId])
          else throw err
        }
      }
    } catch (err) {
      log.warn({ err, key: written.key }, 'late replicas of a variant not recorded; the replicator will repair them')
    }
  }

  /** A variant written for a file purged meanwhile: remove every copy, then its pending row. */
  async function discard(written: WrittenBlob): Promise<void> {
    try {
      const nodeIds = [...written.replicas, ...(await written.remaining)]
      const removed = await blobs.remove(written.key, nodeIds)
      if (removed.length === nodeIds.length) await metadata.abandonBlob(written.key)
    } catch (err) {
      log.warn({ err, key: written.key }, 'cleanup of a variant of a purged file is left to the sweeper')
    }
  }
}

function formatMiB(bytes: number): string {
  return `${Math.round(bytes / (1024 * 1024))} MiB`
}
