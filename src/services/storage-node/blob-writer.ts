// Writing a blob file (format: blob-format.ts): the body streams into a temp
// file while its sha256 and block table are computed; the table follows the
// bytes and the header is rewritten once the sha256 is known, then the file
// is fsynced. blob-files.ts renames it into place: until then it is invisible,
// and a crash leaves only a temp file, removed at start.
import { createHash, randomBytes } from 'node:crypto'
import { unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import type { BlobRecord } from '../../core/file.ts'
import { ChecksumMismatch, InsufficientStorage, Timeout } from '../../core/errors.ts'
import { BLOB_HEADER_BYTES, BLOCK_BYTES, createBlockTable, encodeHeader } from './blob-format.ts'
import { closeFd, closeQuietly, fdatasyncFd, fsyncFd, openFd, writevFd } from './file-calls.ts'

/** flush dirty pages every this many bytes, so the final fsync stays short */
const SYNC_EVERY_BYTES = 32 * 1024 * 1024
/** bodies up to this size are gathered and written with one writev */
const WHOLE_WRITE_BYTES = 1024 * 1024

/** A blob written to a temp file and fsynced, not yet visible. */
export interface Staged {
  tmp: string
  record: BlobRecord
  /** the size of the whole file */
  fileSize: number
}

/**
 * Streams `source` into a new temp file in tmpDir (header, bytes, block
 * table) while hashing, then fsyncs it. Throws ChecksumMismatch when `sha256`
 * is given and differs, Timeout when the source sends nothing for
 * idleTimeoutMs, InsufficientStorage when the disk is full; on any failure
 * the temp file is gone.
 *
 * One descriptor does all of it. A body that ends within WHOLE_WRITE_BYTES
 * is written with one writev (header, bytes, table): a small blob costs three
 * pool calls (open, writev, fsync) and a synchronous close (file-calls.ts),
 * and small blobs are most of the calls a node gets.
 */
export async function stageBlob(tmpDir: string, key: string, source: Readable, options: { sha256?: string; idleTimeoutMs: number }): Promise<Staged> {
  const tmp = join(tmpDir, `${key}.${randomBytes(6).toString('hex')}.part`)
  const hash = createHash('sha256')
  const blocks = createBlockTable(BLOCK_BYTES)
  const chunks = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  let size = 0
  const idle = setTimeout(() => {
    source.destroy(new Timeout(`no bytes received for ${options.idleTimeoutMs} ms`))
  }, options.idleTimeoutMs)
  /** the next chunk, hashed and counted, or null at the end */
  const next = async (): Promise<Buffer | null> => {
    const step = await chunks.next()
    if (step.done === true) return null
    idle.refresh()
    hash.update(step.value)
    blocks.update(step.value)
    size += step.value.length
    return step.value
  }
  let fd: number | null = null
  try {
    const head: Buffer[] = []
    let ended = false
    while (!ended && size <= WHOLE_WRITE_BYTES) {
      const chunk = await next()
      if (chunk === null) ended = true
      else head.push(chunk)
    }
    fd = await openFd(tmp, 'wx')
    let position = BLOB_HEADER_BYTES
    if (!ended) {
      position += await writeAll(fd, head, position)
      let synced = 0
      for (let chunk = await next(); chunk !== null; chunk = await next()) {
        position += await writeAll(fd, [chunk], position)
        if (size - synced >= SYNC_EVERY_BYTES) {
          // flush dirty pages as we go, so the final fsync stays short
          await fdatasyncFd(fd)
          synced = size
        }
      }
      head.length = 0
    }
    clearTimeout(idle)
    const sha256 = hash.digest('hex')
    if (options.sha256 !== undefined && options.sha256 !== sha256) {
      throw new ChecksumMismatch(`the body's sha256 is ${sha256}, not ${options.sha256}`)
    }
    const table = blocks.finish()
    const header = encodeHeader(sha256, size, BLOCK_BYTES)
    if (ended) await writeAll(fd, [header, ...head, table], 0)
    else {
      await writeAll(fd, [table], position)
      await writeAll(fd, [header], 0)
    }
    await fsyncFd(fd)
    const done = fd
    fd = null
    closeFd(done)
    return { tmp, record: { key, size, sha256 }, fileSize: BLOB_HEADER_BYTES + size + table.length }
  } catch (err) {
    clearTimeout(idle)
    // a body still arriving is cut (a finished one is left alone, so the caller can still answer)
    if (!source.readableEnded && !source.destroyed) source.destroy()
    if (fd !== null) closeQuietly(fd)
    await unlink(tmp).catch(() => undefined)
    throw storageError(err)
  }
}

/** Writes every buffer at `position` (writev may write less than asked); returns the bytes written. */
async function writeAll(fd: number, buffers: Buffer[], position: number): Promise<number> {
  let total = 0
  const pending = buffers.filter((b) => b.length > 0)
  while (pending.length > 0) {
    const bytesWritten = await writevFd(fd, pending, position + total)
    total += bytesWritten
    let skip = bytesWritten
    while (pending.length > 0 && skip >= pending[0]!.length) skip -= pending.shift()!.length
    if (skip > 0) pending[0] = pending[0]!.subarray(skip)
  }
  return total
}

/** Our error for a failed write: a full disk is 507. */
export function storageError(err: unknown): unknown {
  return (err as NodeJS.ErrnoException).code === 'ENOSPC' ? new InsufficientStorage('the node is out of disk space') : err
}
