// HTTP Range (RFC 9110 §14) for one range: `bytes=a-b`, `bytes=a-`, `bytes=-n`.
// A header we do not understand (another unit, several ranges, b < a) is
// ignored, as the RFC allows: the answer is the whole body. Gateway and
// storage node both use this one reading.
import type { ByteRange } from '../ports.ts'

export type RangeRequest = { kind: 'none' } | { kind: 'range'; range: ByteRange } | { kind: 'unsatisfiable' }

export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined) return { kind: 'none' }
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null) return { kind: 'none' } // malformed or multi-range: ignore, as the RFC allows
  const [, a, b] = m as unknown as [string, string, string]
  if (a === '' && b === '') return { kind: 'none' }
  if (a === '') {
    const suffix = Number(b)
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' }
    return { kind: 'range', range: { start: Math.max(0, size - suffix), end: size - 1 } }
  }
  const start = Number(a)
  // last < first makes the header invalid, and an invalid header is ignored
  if (b !== '' && Number(b) < start) return { kind: 'none' }
  if (start >= size) return { kind: 'unsatisfiable' }
  return { kind: 'range', range: { start, end: b === '' ? size - 1 : Math.min(Number(b), size - 1) } }
}
