// A storage node's blobs on local disk (DESIGN §4).
//
// Layout under the data directory:
//   node-id                       this node's id, written once
//   tmp/<key>.<rand>.part         uploads in progress; emptied at start
//   blobs/<key[0..2]>/<key>       committed blobs
//   quarantine/<key>.<ms>         damaged blobs: bytes that fail their checksums, bad header or size
//
// A blob file holds the blob's header (with its sha256), its bytes and a
// table of per-block CRC32s (blob-format.ts). All three live in one file, so
// the one atomic rename that makes a blob visible also puts its checksums on
// record: a crash can leave a temp file (removed at start) but never a
// visible blob without its correct checksums, and a replace swaps them all
// together. Every read is verified block by block (blob-reader.ts).
import { randomBytes } from 'node:crypto'
import type { Dirent } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, unlink, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type { Logger } from '../../log.ts'
import type { BlobRecord, } from '../../core/file.ts'
import { ID_PATTERN } from '../../core/ids.ts'
import { BLOB_HEADER_BYTES, BLOCK_BYTES, decodeHeader, fileBytes, type BlobHeader } from './blob-format.ts'
import { fileSource, memorySource, readVerified } from './blob-reader.ts'
import { closeFd, fsyncFd, openFd, openReadOnly, type ReadOnlyFile } from './file-calls.ts'
import { stageBlob, storageError, type Staged } from './blob-writer.ts'

/**
 * The first read of every open: the header, and the whole file of a blob of
 * up to one block (its bytes and one table entry, plus a byte to see the end),
 * so that a small blob costs one disk read.
 */
const OPEN_READ_BYTES = BLOB_HEADER_BYTES + BLOCK_BYTES + 5
/** a rewrite of a MAYFLYB1 blob reads our own disk: a stall this long is a fault */
const UPGRADE_IDLE_MS = 60_000

/** Where a committed blob's file lives. */
export function blobPath(dataDir: string, key: string): string {
  return join(dataDir, 'blobs', key.slice(0, 2), key)
}

/** A blob opened for reading: its record, and its bytes from the file it was opened on. */
export interface OpenedBlob extends BlobRecord {
  /** 2: verified by block; 1: a MAYFLYB1 file, checked by sha256 on whole reads only (blob-format.ts) */
  format: 1 | 2
  /**
   * The bytes, or bytes start..end (inclusive), each checked against its
   * block's CRC32 before it is handed out (blob-reader.ts readVerified); with
   * `sha256`, a whole read is also checked against the sha256 before its last
   * bytes go out. Resolves once the first bytes are verified: with a Buffer
   * when they are all there is (file closed), else with a stream that closes
   * the file. Damage quarantines the blob; before the first byte, this
   * rejects with DamagedBlob (404); later, the stream errors after its last
   * good byte. Call once.
   */
  read(range?: { start: number; end: number }, options?: { sha256?: boolean }): Promise<Buffer | Readable>
  /** Closes the file when read() is not called. */
  close(): Promise<void>
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
  /**
   * Rewrites a MAYFLYB1 blob in the current format, after a whole read has
   * verified it against its sha256, unless it was replaced or removed
   * meanwhile. True when it did; false for a current or absent blob. A
   * damaged blob is quarantined and this throws DamagedBlob.
   */
  upgrade(key: string): Promise<boolean>
  /** Idempotent; true when there was a blob to delete. */
  remove(key: string): Promise<boolean>
  /** Up to `limit` blobs with key > after, in key order, and whether more follow. */
  list(after: string, limit: number): Promise<{ blobs: BlobRecord[]; more: boolean }>
  /**
   * usedBytes: the size of the blob files (headers and block tables included);
   * quarantined: damaged blob files set aside in quarantine/ (it only grows, so
   * the replication manager notices each new one and repairs the copy)
   */
  stats(): { blobCount: number; usedBytes: number; quarantined: number }
  disk(): Promise<{ capacityBytes: number; freeBytes: number }>
}

/** Which file a path held: a replace (rename over it) changes both. */
interface FileIdentity {
  ino: number
  mtimeMs: number
}

async function fsyncDir(path: string): Promise<void> {
  const fd = await openFd(path, 'r')
  try {
    await fsyncFd(fd)
  } finally {
    closeFd(fd)
  }
}

/** The file's header when the file's size agrees with it, else null. */
async function readHeader(fh: FileHandle): Promise<BlobHeader | null> {
  const buf = Buffer.alloc(BLOB_HEADER_BYTES)
  const [{ bytesRead }, st] = await Promise.all([fh.read(buf, 0, BLOB_HEADER_BYTES, 0), fh.stat()])
  const header = decodeHeader(buf.subarray(0, bytesRead))
  return header !== null && st.size === fileBytes(header) ? header : null
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
      usedBytes += size
    }
  }
  let quarantined = (await readdir(quarantineDir)).length
  log.info({ blobCount, usedBytes, quarantined }, 'blob files opened')

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

  /** the blob file at path (its size and identity), or null when absent */
  async function fileAt(path: string): Promise<({ size: number } & FileIdentity) | null> {
    try {
      return await stat(path)
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
  }

  /** Moves the blob's file to quarantine: the very file given, unless it has been replaced meanwhile (the new one is not suspect). */
  async function moveToQuarantine(key: string, path: string, reason: string, file: FileIdentity): Promise<void> {
    await serialize(key, async () => {
      const current = await fileAt(path)
      if (current === null || current.ino !== file.ino || current.mtimeMs !== file.mtimeMs) return
      await rename(path, join(quarantineDir, `${key}.${Date.now()}`))
      blobCount -= 1
      usedBytes -= current.size
      quarantined += 1
      log.error({ key, reason }, 'blob quarantined')
    })
  }

  /**
   * Renames a staged blob into place (atomic create or replace) and fsyncs the
   * directory. With `over`, only over that very file (inode and mtime, as an
   * inode number may be reused): false (and the temp file removed) when it is
   * gone or was replaced.
   */
  async function commit(staged: Staged, over?: FileIdentity): Promise<boolean> {
    const { key } = staged.record
    const shard = key.slice(0, 2)
    try {
      await ensureShard(shard)
      const path = blobPath(dataDir, key)
      const done = await serialize(key, async () => {
        const previous = await fileAt(path)
        if (over !== undefined && (previous?.ino !== over.ino || previous.mtimeMs !== over.mtimeMs)) return false
        await rename(staged.tmp, path)
        await fsyncDir(join(blobsDir, shard))
        blobCount += previous === null ? 1 : 0
        usedBytes += staged.fileSize - (previous?.size ?? 0)
        return true
      })
      if (!done) await unlink(staged.tmp)
      return done
    } catch (err) {
      await unlink(staged.tmp).catch(() => undefined)
      throw storageError(err)
    }
  }

  async function write(key: string, source: Readable, options: { sha256?: string; idleTimeoutMs: number }): Promise<BlobRecord> {
    const staged = await stageBlob(tmpDir, key, source, options)
    await commit(staged)
    return staged.record
  }

  /**
   * The blob, or null. `file()` is the identity of the file it was opened on
   * (by fstat, asked only for a quarantine or a rewrite, before the read ends).
   *
   * A small blob costs two pool calls: the open, and one read of the whole
   * file, whose end tells its size (a read of a regular file is short only at
   * its end), so no fstat. A file longer than that first read is checked
   * against its header by fstat.
   */
  async function openFile(key: string): Promise<{ blob: OpenedBlob; file: () => Promise<FileIdentity> } | null> {
    const path = blobPath(dataDir, key)
    let file: ReadOnlyFile
    try {
      file = await openReadOnly(path)
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
    const first = Buffer.allocUnsafe(OPEN_READ_BYTES)
    let bytesRead: number
    let header: BlobHeader | null
    let whole: boolean
    try {
      bytesRead = await file.read(first, OPEN_READ_BYTES, 0)
      header = decodeHeader(first.subarray(0, bytesRead))
      // the whole file is in memory, and it has the size its header gives it
      whole = header !== null && bytesRead < OPEN_READ_BYTES && bytesRead === fileBytes(header)
      if (header !== null && !whole) {
        const { size } = await file.stat()
        if (size !== fileBytes(header)) header = null
      }
      if (header === null) {
        const st = await file.stat()
        await file.close()
        const found = decodeHeader(first.subarray(0, bytesRead))
        const reason = found === null ? 'bad header' : `the file has ${st.size} bytes, its header says ${fileBytes(found)}`
        await moveToQuarantine(key, path, reason, st)
        return null
      }
    } catch (err) {
      await file.close().catch(() => undefined)
      throw err
    }
    const checked = header
    // a small blob is all in `first`: its source only has to release the file
    const source = whole ? memorySource(first.subarray(0, bytesRead), () => file.close()) : fileSource(file)
    const identity = async (): Promise<FileIdentity> => {
      const { ino, mtimeMs } = await file.stat()
      return { ino, mtimeMs }
    }
    const blob: OpenedBlob = {
      key,
      size: checked.size,
      sha256: checked.sha256,
      format: checked.format,
      read(range, options) {
        return readVerified({
          source,
          header: checked,
          start: range?.start ?? 0,
          end: range?.end ?? checked.size - 1,
          sha256: options?.sha256 ?? false,
          // called before the source is closed (blob-reader.ts), so the fstat sees the file that was read
          onDamage: (reason) =>
            file
              .stat()
              .then((st) => moveToQuarantine(key, path, reason, st))
              .catch((err: unknown) => log.error({ err, key, reason }, 'quarantine failed')),
        })
      },
      close: () => source.close(),
    }
    return { blob, file: identity }
  }

  async function upgrade(key: string): Promise<boolean> {
    const opened = await openFile(key)
    if (opened === null) return false
    const { blob } = opened
    if (blob.format === 2) {
      await blob.close()
      return false
    }
    let file: FileIdentity
    try {
      file = await opened.file()
    } catch (err) {
      await blob.close()
      throw err
    }
    const body = await blob.read()
    const staged = await stageBlob(tmpDir, key, Buffer.isBuffer(body) ? Readable.from([body]) : body, { sha256: blob.sha256, idleTimeoutMs: UPGRADE_IDLE_MS })
    const done = await commit(staged, file)
    if (done) log.info({ key }, 'blob rewritten with block checksums')
    return done
  }

  async function remove(key: string): Promise<boolean> {
    const path = blobPath(dataDir, key)
    return serialize(key, async () => {
      const previous = await fileAt(path)
      if (previous === null) return false
      try {
        await unlink(path)
      } catch (err) {
        if (isNotFound(err)) return false
        throw err
      }
      await fsyncDir(join(blobsDir, key.slice(0, 2)))
      blobCount -= 1
      usedBytes -= previous.size
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
      if (header === null) {
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
    open: async (key) => (await openFile(key))?.blob ?? null,
    upgrade,
    remove,
    list,
    stats: () => ({ blobCount, usedBytes, quarantined }),
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
