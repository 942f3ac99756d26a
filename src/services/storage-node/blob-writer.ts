// Writing a blob file (format: blob-format.ts): the body streams into a temp
// file while its sha256 and block table are computed; the table follows the
// bytes and the header is rewritten once the sha256 is known, then the file
// is fsynced. blob-files.ts renames it into place: until then it is invisible,
// and a crash leaves only a temp file, removed at start.
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream, fdatasync } from 'node:fs'
import { open, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { BlobRecord } from '../../core/file.ts'
import { ChecksumMismatch, MayflyError, Timeout } from '../../core/errors.ts'
import { BLOB_HEADER_BYTES, BLOCK_BYTES, createBlockTable, encodeHeader } from './blob-format.ts'

/** flush dirty pages every this many bytes, so the final fsync stays short */
const SYNC_EVERY_BYTES = 32 * 1024 * 1024

/** 507: the node's disk is full. */
export class InsufficientStorage extends MayflyError {
  constructor(message: string) {
    super(507, 'insufficient_storage', message)
  }
}

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
 */
export async function stageBlob(tmpDir: string, key: string, source: Readable, options: { sha256?: string; idleTimeoutMs: number }): Promise<Staged> {
  const tmp = join(tmpDir, `${key}.${randomBytes(6).toString('hex')}.part`)
  const hash = createHash('sha256')
  const blocks = createBlockTable(BLOCK_BYTES)
  let size = 0
  let synced = 0
  let tableBytes = 0
  const out = createWriteStream(tmp, { flags: 'wx' })
  const idle = setTimeout(() => {
    source.destroy(new Timeout(`no bytes received for ${options.idleTimeoutMs} ms`))
  }, options.idleTimeoutMs)
  try {
    out.write(encodeHeader('0'.repeat(64), 0)) // the real header replaces it once the sha256 is known
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        idle.refresh()
        hash.update(chunk)
        blocks.update(chunk)
        size += chunk.length
        const fd = (out as unknown as { fd: number | null }).fd // typed in Node, missing from @types/node
        if (size - synced < SYNC_EVERY_BYTES || fd === null) return done(null, chunk)
        synced = size
        this.push(chunk)
        fdatasync(fd, (err) => done(err))
      },
      flush(done) {
        const table = blocks.finish()
        tableBytes = table.length
        done(null, table)
      },
    })
    await pipeline(source, meter, out)
    clearTimeout(idle)
    const sha256 = hash.digest('hex')
    if (options.sha256 !== undefined && options.sha256 !== sha256) {
      throw new ChecksumMismatch(`the body's sha256 is ${sha256}, not ${options.sha256}`)
    }
    const fh = await open(tmp, 'r+')
    try {
      await fh.write(encodeHeader(sha256, size, BLOCK_BYTES), 0, BLOB_HEADER_BYTES, 0)
      await fh.sync()
    } finally {
      await fh.close()
    }
    return { tmp, record: { key, size, sha256 }, fileSize: BLOB_HEADER_BYTES + size + tableBytes }
  } catch (err) {
    clearTimeout(idle)
    if (!out.closed) {
      // wait for the file to be opened and closed, so that the unlink comes after its creation
      const closed = once(out, 'close')
      out.destroy()
      await closed.catch(() => undefined)
    }
    await unlink(tmp).catch(() => undefined)
    throw storageError(err)
  }
}

/** Our error for a failed write: a full disk is 507. */
export function storageError(err: unknown): unknown {
  return (err as NodeJS.ErrnoException).code === 'ENOSPC' ? new InsufficientStorage('the node is out of disk space') : err
}
