// The on-disk format of one blob file (DESIGN §4; §5 invariant 2).
//
//   MAYFLYB2   header | the blob's bytes | block table
//     header   128 bytes: "MAYFLYB2 <sha256 hex> <size, 20 digits> <block bytes, 10 digits>"
//              padded with spaces, ending in "\n"
//     table    the CRC32 (zlib's, big-endian uint32) of each block of `block bytes` of the
//              blob, the last block possibly shorter: ceil(size / block bytes) entries
//   MAYFLYB1   header "MAYFLYB1 <sha256 hex> <size, 20 digits>" | bytes: written before
//              blocks had checksums. Still read (a whole read is checked by its sha256 only,
//              a range not at all); the scrubber rewrites each one as MAYFLYB2.
//
// Why block checksums: a whole-file sha256 can only be checked after the last
// byte, when the earlier bytes have long gone to the gateway and on to the
// user. A block's CRC is checked before any byte of the block is sent, so a
// node never sends a damaged byte: a read stops short at the damage instead,
// and the gateway resumes from there on another replica with right bytes.
// Why CRC32: it catches every error burst of up to 32 bits and other damage
// but for a chance of 2^-32 per block, and node:zlib computes it at several
// GB/s (sha256 at under 2). The sha256 stays the end-to-end check.
// Why a trailer: the bytes stay contiguous at a fixed offset (a range is one
// read), the header's size says where the table starts, and the table is
// written while the bytes stream in. One atomic rename still makes the bytes,
// sha256 and table visible together.
import { crc32 } from 'node:zlib'

export const BLOB_HEADER_BYTES = 128
/** Block size of new blobs: 4 bytes of table per 64 KiB (0.006 %); damage costs one block of a read. */
export const BLOCK_BYTES = 64 * 1024
const CRC_BYTES = 4
const MAX_BLOCK_BYTES = 64 * 1024 * 1024
const SHA256_PATTERN = /^[0-9a-f]{64}$/

export interface BlobHeader {
  format: 1 | 2
  sha256: string
  size: number
  /** format 2: bytes per checksummed block; format 1: 0 (no table) */
  blockBytes: number
}

export function encodeHeader(sha256: string, size: number, blockBytes = BLOCK_BYTES): Buffer {
  const text = `MAYFLYB2 ${sha256} ${String(size).padStart(20, '0')} ${String(blockBytes).padStart(10, '0')}`
  return Buffer.from(text.padEnd(BLOB_HEADER_BYTES - 1, ' ') + '\n', 'latin1')
}

/** The header at the start of `buf`, or null when it is not one of ours (or damaged). */
export function decodeHeader(buf: Buffer): BlobHeader | null {
  if (buf.length < BLOB_HEADER_BYTES || buf[BLOB_HEADER_BYTES - 1] !== 0x0a) return null
  const [magic, sha256, size, blockBytes, ...rest] = buf.toString('latin1', 0, BLOB_HEADER_BYTES - 1).trimEnd().split(' ')
  if (sha256 === undefined || !SHA256_PATTERN.test(sha256) || size === undefined || !/^\d{20}$/.test(size) || rest.length > 0) return null
  if (!Number.isSafeInteger(Number(size))) return null
  if (magic === 'MAYFLYB1' && blockBytes === undefined) return { format: 1, sha256, size: Number(size), blockBytes: 0 }
  if (magic !== 'MAYFLYB2' || blockBytes === undefined || !/^\d{10}$/.test(blockBytes)) return null
  const block = Number(blockBytes)
  if (block < 1 || block > MAX_BLOCK_BYTES) return null
  return { format: 2, sha256, size: Number(size), blockBytes: block }
}

export function blockCount(header: BlobHeader): number {
  return header.format === 2 ? Math.ceil(header.size / header.blockBytes) : 0
}

/** Where the block table starts in the file. */
export function tableOffset(header: BlobHeader): number {
  return BLOB_HEADER_BYTES + header.size
}

/** The size the blob's file must have. */
export function fileBytes(header: BlobHeader): number {
  return tableOffset(header) + CRC_BYTES * blockCount(header)
}

/** The recorded CRC32 of block `index`, from a table slice that starts at block `first`. */
export function recordedCrc(table: Buffer, first: number, index: number): number {
  return table.readUInt32BE(CRC_BYTES * (index - first))
}

/** The byte range in the file of the table entries for blocks first..last. */
export function tableSlice(header: BlobHeader, first: number, last: number): { offset: number; length: number } {
  return { offset: tableOffset(header) + CRC_BYTES * first, length: CRC_BYTES * (last - first + 1) }
}

/** Computes the block table of bytes that arrive in chunks of any size. */
export function createBlockTable(blockBytes = BLOCK_BYTES): { update(chunk: Buffer): void; finish(): Buffer } {
  const crcs: number[] = []
  let crc = 0
  let filled = 0
  return {
    update(chunk) {
      for (let at = 0; at < chunk.length; ) {
        const take = Math.min(blockBytes - filled, chunk.length - at)
        crc = crc32(take === chunk.length ? chunk : chunk.subarray(at, at + take), crc)
        filled += take
        at += take
        if (filled === blockBytes) {
          crcs.push(crc)
          crc = 0
          filled = 0
        }
      }
    },
    finish() {
      if (filled > 0) crcs.push(crc)
      const table = Buffer.allocUnsafe(CRC_BYTES * crcs.length)
      for (let i = 0; i < crcs.length; i++) table.writeUInt32BE(crcs[i]!, CRC_BYTES * i)
      return table
    },
  }
}
