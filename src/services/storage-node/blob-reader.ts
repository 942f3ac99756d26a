// Verified reads of a blob (format: blob-format.ts). No byte leaves here
// before the CRC32 of its block has been checked. On damage the read stops at
// the last good block: the reader gets a shorter, never a wrong, body, the
// blob is quarantined, and the gateway resumes from that position on another
// replica (DESIGN §5.2, cluster/blob-store.ts).
//
// The whole-blob sha256 is checked here only on request (scrub) and for
// MAYFLYB1 blobs, which have nothing else: it costs about 0.6 ms of CPU per
// MiB, a third of the node's work on a large read, and the gateway already
// checks it end to end on every whole download, as a copying node does on
// write. It only adds the CRC32's 2^-32 chance of missing damage in a block,
// and the gateway's check turns that case into an error, not wrong bytes.
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { crc32 } from 'node:zlib'
import { DamagedBlob } from '../../core/errors.ts'
import { BLOB_HEADER_BYTES, recordedCrc, tableSlice, type BlobHeader } from './blob-format.ts'
import type { ReadOnlyFile } from './file-calls.ts'

/**
 * Bytes of the first disk read: a range up to this size (say, a 1 MiB image)
 * is read, verified and answered as one Buffer, no stream at all.
 */
const BUFFERED_RANGE_BYTES = 1024 * 1024
/**
 * Bytes of each later read of a longer range. Reads are whole blocks, checked
 * one by one in memory; a stream reads one ahead of the socket, so it holds
 * about two of these.
 */
const READ_CHUNK_BYTES = 256 * 1024
const EMPTY = Buffer.alloc(0)

/** Where a verified read gets the file's bytes: from disk, or from the whole file already in memory. */
export interface BlobSource {
  /** `length` bytes of the file from `offset`; fewer only at the end of the file */
  read(offset: number, length: number): Promise<Buffer> | Buffer
  /** idempotent */
  close(): Promise<void>
}

/** A source over the whole file, already in memory; close() releases the file it came from. */
export function memorySource(file: Buffer, close: () => Promise<void>): BlobSource {
  return { read: (offset, length) => file.subarray(offset, offset + length), close }
}

/** A source that reads the open file; close() closes it (after reads in flight). */
export function fileSource(file: ReadOnlyFile): BlobSource {
  return {
    async read(offset, length) {
      const buf = Buffer.allocUnsafe(length)
      const bytesRead = await file.read(buf, length, offset)
      return bytesRead === length ? buf : buf.subarray(0, bytesRead)
    },
    close: () => file.close(),
  }
}

export interface VerifiedRead {
  source: BlobSource
  header: BlobHeader
  /** the blob's bytes start..end (inclusive); end < start reads nothing */
  start: number
  end: number
  /** a whole read is also checked against the sha256 before its last bytes go out (always for MAYFLYB1) */
  sha256: boolean
  /** quarantines the blob and logs why; never rejects */
  onDamage(reason: string): Promise<void>
}

interface Step {
  /** verified bytes to hand out, trimmed to the range */
  bytes: Buffer
  /** why the read stops here, or null */
  damage: string | null
  done: boolean
}

/**
 * The verified bytes of a blob. Resolves once the first bytes are read and
 * verified: with a Buffer when the whole range came in one read (and the file
 * is closed), else with a stream that closes the file when it ends or is
 * destroyed. Rejects with DamagedBlob (after quarantine) when there is damage
 * before the first byte; the stream errors with DamagedBlob after its last
 * good byte when damage comes later, so it never ends cleanly with fewer bytes.
 */
export async function readVerified(r: VerifiedRead): Promise<Buffer | Readable> {
  const { source, header, start, end } = r
  if (end < start) {
    await source.close()
    return EMPTY
  }
  // a MAYFLYB1 blob has no blocks: read it in chunks and check the sha256 of a whole read only
  const crcs = header.format === 2
  const block = crcs ? header.blockBytes : READ_CHUNK_BYTES
  const first = Math.floor(start / block)
  const last = Math.floor(end / block)
  const hash = (r.sha256 || !crcs) && start === 0 && end === header.size - 1 ? createHash('sha256') : null
  let table: Promise<Buffer> | Buffer | null = null
  if (crcs) {
    const slice = tableSlice(header, first, last)
    table = source.read(slice.offset, slice.length)
  }
  let next = first

  /** reads, verifies and trims the next blocks, about `bytes` of them */
  async function step(bytes: number): Promise<Step> {
    const count = Math.min(Math.max(1, Math.floor(bytes / block)), last + 1 - next)
    const from = next * block
    const to = Math.min((next + count) * block, header.size)
    const [data, crcTable] = await Promise.all([source.read(BLOB_HEADER_BYTES + from, to - from), table])
    let good = data.length
    let damage: string | null = null
    if (data.length < to - from) {
      good = 0
      damage = `the file ends at blob byte ${from + data.length}, before byte ${to}`
    } else if (crcTable !== null && crcTable.length < 4 * (last - first + 1)) {
      good = 0
      damage = 'the block table is cut short'
    } else if (crcTable !== null) {
      for (let i = 0; i < count; i++) {
        const s = i * block
        const e = Math.min(s + block, data.length)
        if (crc32(data.subarray(s, e)) !== recordedCrc(crcTable, first, next + i)) {
          good = s
          damage = `block ${next + i} (blob bytes ${from + s}-${from + e - 1}) fails its CRC32`
          break
        }
      }
    }
    next += count
    if (hash !== null && damage === null) {
      hash.update(data)
      if (next > last) {
        const actual = hash.digest('hex')
        // blocks are right but the whole is not (say, a damaged header): hold the last read back
        if (actual !== header.sha256) {
          good = 0
          damage = `the bytes hash to ${actual}, not the recorded sha256 ${header.sha256}`
        }
      }
    }
    const lo = Math.max(start - from, 0)
    const hi = Math.min(end + 1 - from, good)
    return { bytes: hi > lo ? data.subarray(lo, hi) : EMPTY, damage, done: damage !== null || next > last }
  }

  let head: Step
  try {
    head = await step(BUFFERED_RANGE_BYTES)
  } catch (err) {
    await source.close()
    throw err
  }
  if (head.damage !== null && head.bytes.length === 0) {
    await r.onDamage(head.damage)
    await source.close()
    throw new DamagedBlob(`the blob is damaged (${head.damage}); it has been quarantined`)
  }
  if (head.done && head.damage === null) {
    // the answer need not wait for the close
    source.close().catch(() => undefined)
    return head.bytes
  }

  /** damage found with bytes before it: those go out first, then the stream fails */
  let pending = head.damage
  const fail = (stream: Readable, reason: string) => {
    void r.onDamage(reason).then(() => stream.destroy(new DamagedBlob(`the blob is damaged (${reason}); it has been quarantined`)))
  }
  const stream = new Readable({
    highWaterMark: READ_CHUNK_BYTES,
    read() {
      if (pending !== null) return fail(this, pending)
      step(READ_CHUNK_BYTES).then(
        ({ bytes, damage, done }) => {
          if (damage !== null && bytes.length === 0) return fail(this, damage)
          pending = damage
          this.push(bytes)
          if (done && damage === null) this.push(null)
        },
        (err: unknown) => this.destroy(err as Error),
      )
    },
    destroy(err, done) {
      source.close().then(() => done(err), (closeErr: unknown) => done(err ?? (closeErr as Error)))
    },
  })
  stream.push(head.bytes)
  return stream
}
