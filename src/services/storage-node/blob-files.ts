// A storage node's blobs on local disk (DESIGN §4).
//
// Layout under the data directory:
//   node-id                       this node's id, written once
//   tmp/<key>.<rand>.part         uploads in progress; emptied at start
//   blobs/<key[0..2]>/<key>       committed blobs
//   quarantine/<key>.<ms>         blobs whose bytes no longer match their sha256
//
// A blob file is a 128-byte header followed by the blob's bytes. The header is
//   "MAYFLYB1 <sha256 hex> <size, 20 digits>" padded with spaces, ending in "\n"
// The sha256 lives in the same file as the bytes, so the one atomic rename
// that makes a blob visible also puts its checksum on record: a crash can
// leave a temp file (removed at start) but never a visible blob without its
// correct sha256, and a replace swaps bytes and sha256 together.
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream, fdatasync, type Dirent } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, unlink, writeFile, type FileHandle } from 'node:fs/promises'
import { once } from 'node:events'
import { join } from 'node:path'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Logger } from '../../log.ts'
import type { BlobRecord, } from '../../core/file.ts'
import { ChecksumMismatch, MayflyError, Timeout } from '../../core/errors.ts'
import { ID_PATTERN } from '../../core/ids.ts'

export const BLOB_HEADER_BYTES = 128
const MAGIC = 'MAYFLYB1'
const SHA256_PATTERN = /^[0-9a-f]{64}$/
/** flush dirty pages every this many bytes, so the final fsync stays short */
const SYNC_EVERY_BYTES = 32 * 1024 * 1024

/** Where a committed blob's file lives (header + bytes). */
export function blobPath(dataDir: string, key: string): string {
  return join(dataDir, 'blobs', key.slice(0, 2), key)
}

function encodeHeader(sha256: string, size: number): Buffer {
  const text = `${MAGIC} ${sha256} ${String(size).padStart(20, '0')}`
  return Buffer.from(text.padEnd(BLOB_HEADER_BYTES - 1, ' ') + '\n', 'latin1')
}

function decodeHeader(buf: Buffer): { sha256: string; size: number } | null {
  if (buf.length < BLOB_HEADER_BYTES) return null
  const [magic, sha256, size] = buf.toString('latin1', 0, BLOB_HEADER_BYTES).trimEnd().split(' ')
  if (magic !== MAGIC || sha256 === undefined || !SHA256_PATTERN.test(sha256) || size === undefined || !/^\d{20}$/.test(size)) return null
  return { sha256, size: Number(size) }
}

/** 507: the node's disk is full. */
export class InsufficientStorage extends MayflyError {
  constructor(message: string) {
    super(507, 'insufficient_storage', message)
  }
}

/** A blob opened for reading: its record, and its bytes from the file it was opened on. */
export interface OpenedBlob extends BlobRecord {
  /** The bytes, or bytes start..end (inclusive). Call once; the stream closes the file. */
  read(range?: { start: number; end: number }): Readable
  /** Closes the file when read() is not called. */
  close(): Promise<void>
  /** Moves this very file (if still in place) to quarantine. */
  quarantine(reason: string): Promise<void>
}

export interface BlobFiles {
  readonly dataDir: string
  /**
   * Streams `source` to a temp file while hashing, then fsyncs and renames it
   * into place (atomic create or replace) and fsyncs the directory. Throws
   * ChecksumMismatch when `sha256` is given and differs, Timeout when the
   * source sends nothing for idleTimeoutMs; on any failure the temp file is gone.
   */
  write(key: string, source: Readable, options: { sha256?: string; idleTimeoutMs: number }): Promise<BlobRecord>
  /** The blob, or null when absent (a damaged file is quarantined and reported absent). */
  open(key: string): Promise<OpenedBlob | null>
  /** Idempotent; true when there was a blob to delete. */
  remove(key: string): Promise<boolean>
  /** Up to `limit` blobs with key > after, in key order, and whether more follow. */
  list(after: string, limit: number): Promise<{ blobs: BlobRecord[]; more: boolean }>
  stats(): { blobCount: number; usedBytes: number }
  disk(): Promise<{ capacityBytes: number; freeBytes: number }>
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

async function readHeader(fh: FileHandle): Promise<{ sha256: string; size: number; fileSize: number } | null> {
  const buf = Buffer.alloc(BLOB_HEADER_BYTES)
  const { bytesRead } = await fh.read(buf, 0, BLOB_HEADER_BYTES, 0)
  const header = decodeHeader(buf.subarray(0, bytesRead))
  if (header === null) return null
  const { size: fileSize } = await fh.stat()
  return { ...header, fileSize }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT'
}

/** The node's id from `<dataDir>/node-id`, created once (random) when absent. */
export async function loadNodeId(dataDir: string): Promise<string> {
  const path = join(dataDir, 'node-id')
  try {
    const id = (await readFile(path, 'utf8')).trim()
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) throw new Error(`${path} holds no valid node id`)
    return id
  } catch (err) {
    if (!isNotFound(err)) throw err
  }
  const id = `node-${randomBytes(6).toString('hex')}`
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, `${id}\n`, { flush: true })
  await rename(tmp, path)
  await fsyncDir(dataDir)
  return id
}

/** Prepares the data directory (empties tmp/) and counts the blobs on disk. */
export async function openBlobFiles(dataDir: string, log: Logger): Promise<BlobFiles> {
  const blobsDir = join(dataDir, 'blobs')
  const tmpDir = join(dataDir, 'tmp')
  const quarantineDir = join(dataDir, 'quarantine')
  await mkdir(blobsDir, { recursive: true })
  await mkdir(quarantineDir, { recursive: true })
  // half-written uploads of a previous life: never visible, now gone
  await rm(tmpDir, { recursive: true, force: true })
  await mkdir(tmpDir, { recursive: true })

  let blobCount = 0
  let usedBytes = 0
  const knownShards = new Set<string>()
  for (const shard of await readdir(blobsDir)) {
    knownShards.add(shard)
    for (const name of await readdir(join(blobsDir, shard))) {
      if (!ID_PATTERN.test(name)) continue
      const { size } = await stat(join(blobsDir, shard, name))
      blobCount += 1
      usedBytes += Math.max(0, size - BLOB_HEADER_BYTES)
    }
  }
  log.info({ blobCount, usedBytes }, 'blob files opened')

  // commit, remove and quarantine of one key run one at a time, so the counters stay exact
  const keyQueues = new Map<string, Promise<unknown>>()
  function serialize<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = keyQueues.get(key) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    const tail = next.catch(() => undefined)
    keyQueues.set(key, tail)
    void tail.then(() => {
      if (keyQueues.get(key) === tail) keyQueues.delete(key)
    })
    return next
  }

  async function ensureShard(shard: string): Promise<void> {
    if (knownShards.has(shard)) return
    const created = await mkdir(join(blobsDir, shard), { recursive: true })
    if (created !== undefined) await fsyncDir(blobsDir)
    knownShards.add(shard)
  }

  /** size of the blob at path, or null when absent */
  async function sizeAt(path: string): Promise<number | null> {
    try {
      return Math.max(0, (await stat(path)).size - BLOB_HEADER_BYTES)
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
  }

  async function moveToQuarantine(key: string, path: string, reason: string, ino?: number): Promise<void> {
    await serialize(key, async () => {
      let current
      try {
        current = await stat(path)
      } catch (err) {
        if (isNotFound(err)) return
        throw err
      }
      if (ino !== undefined && current.ino !== ino) return // replaced meanwhile: the new one is not suspect
      await rename(path, join(quarantineDir, `${key}.${Date.now()}`))
      blobCount -= 1
      usedBytes -= Math.max(0, current.size - BLOB_HEADER_BYTES)
      log.error({ key, reason }, 'blob quarantined')
    })
  }

  async function write(key: string, source: Readable, options: { sha256?: string; idleTimeoutMs: number }): Promise<BlobRecord> {
    const tmp = join(tmpDir, `${key}.${randomBytes(6).toString('hex')}.part`)
    const hash = createHash('sha256')
    let size = 0
    let synced = 0
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
          size += chunk.length
          const fd = (out as unknown as { fd: number | null }).fd // typed in Node, missing from @types/node
          if (size - synced < SYNC_EVERY_BYTES || fd === null) return done(null, chunk)
          synced = size
          this.push(chunk)
          fdatasync(fd, (err) => done(err))
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
        await fh.write(encodeHeader(sha256, size), 0, BLOB_HEADER_BYTES, 0)
        await fh.sync()
      } finally {
        await fh.close()
      }
      const shard = key.slice(0, 2)
      await ensureShard(shard)
      const path = blobPath(dataDir, key)
      await serialize(key, async () => {
        const previous = await sizeAt(path)
        await rename(tmp, path)
        await fsyncDir(join(blobsDir, shard))
        blobCount += previous === null ? 1 : 0
        usedBytes += size - (previous ?? 0)
      })
      return { key, size, sha256 }
    } catch (err) {
      clearTimeout(idle)
      if (!out.closed) {
        // wait for the file to be opened and closed, so that the unlink comes after its creation
        const closed = once(out, 'close')
        out.destroy()
        await closed.catch(() => undefined)
      }
      await unlink(tmp).catch(() => undefined)
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new InsufficientStorage('the node is out of disk space')
      throw err
    }
  }

  async function openBlob(key: string): Promise<OpenedBlob | null> {
    const path = blobPath(dataDir, key)
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
    let header
    let ino: number
    try {
      header = await readHeader(fh)
      ino = (await fh.stat()).ino
    } catch (err) {
      await fh.close()
      throw err
    }
    if (header === null || header.fileSize !== BLOB_HEADER_BYTES + header.size) {
      await fh.close()
      await moveToQuarantine(key, path, header === null ? 'bad header' : 'file size differs from header', ino)
      return null
    }
    const { sha256, size } = header
    return {
      key,
      size,
      sha256,
      read(range) {
        const start = BLOB_HEADER_BYTES + (range?.start ?? 0)
        const end = BLOB_HEADER_BYTES + (range?.end ?? size - 1)
        // an empty blob: end < start, which createReadStream reads as "to EOF" (nothing)
        return fh.createReadStream({ start, end: Math.max(end, start), autoClose: true })
      },
      close: () => fh.close(),
      quarantine: (reason) => moveToQuarantine(key, path, reason, ino),
    }
  }

  async function remove(key: string): Promise<boolean> {
    const path = blobPath(dataDir, key)
    return serialize(key, async () => {
      const previous = await sizeAt(path)
      if (previous === null) return false
      try {
        await unlink(path)
      } catch (err) {
        if (isNotFound(err)) return false
        throw err
      }
      await fsyncDir(join(blobsDir, key.slice(0, 2)))
      blobCount -= 1
      usedBytes -= previous
      return true
    })
  }

  async function recordOf(key: string): Promise<BlobRecord | null> {
    let fh: FileHandle
    try {
      fh = await open(blobPath(dataDir, key), 'r')
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
    try {
      const header = await readHeader(fh)
      if (header === null || header.fileSize !== BLOB_HEADER_BYTES + header.size) {
        log.warn({ key }, 'damaged blob file left out of the inventory')
        return null
      }
      return { key, size: header.size, sha256: header.sha256 }
    } finally {
      await fh.close()
    }
  }

  async function list(after: string, limit: number): Promise<{ blobs: BlobRecord[]; more: boolean }> {
    const blobs: BlobRecord[] = []
    const shards = (await readdir(blobsDir)).filter((s) => s >= after.slice(0, 2)).sort(byCodeUnit)
    for (const shard of shards) {
      let entries: Dirent[]
      try {
        entries = await readdir(join(blobsDir, shard), { withFileTypes: true })
      } catch (err) {
        if (isNotFound(err)) continue
        throw err
      }
      const keys = entries.map((e) => e.name).filter((k) => ID_PATTERN.test(k) && k > after).sort(byCodeUnit)
      for (const key of keys) {
        const record = await recordOf(key)
        if (record === null) continue
        if (blobs.length === limit) return { blobs, more: true }
        blobs.push(record)
      }
    }
    return { blobs, more: false }
  }

  return {
    dataDir,
    write,
    open: openBlob,
    remove,
    list,
    stats: () => ({ blobCount, usedBytes }),
    async disk() {
      const s = await statfs(dataDir)
      return { capacityBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize }
    },
  }
}

/** Keys sort by byte (ASCII) order, the order of the inventory. */
function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
