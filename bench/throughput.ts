// The throughput phases on one target, in this order: 1 MiB uploads, 1 MiB
// downloads, 4 KiB uploads, 4 KiB downloads. Each starts after a `sync` and a short
// unmeasured warm-up at the same concurrency (JIT, connection pools, caches).
// Downloads fetch the objects uploaded just before, round robin; every one
// is checked by length, one in `shaEvery` by sha256.
import { execFileSync } from 'node:child_process'
import { runPhase, type PhaseResult } from './load.ts'
import type { Payload, StoreTarget } from './target.ts'

export const PHASES = ['1MiB-up', '1MiB-down', '4KiB-up', '4KiB-down'] as const
export type PhaseName = (typeof PHASES)[number]

export interface ThroughputOptions {
  concurrency: number
  durationMs: number
  warmupMs: number
  shaEvery: number
  payloads: { large: Payload; small: Payload }
  /** upper bound of uploads per phase (disk use), by payload label */
  maxUploads: { large: number; small: number }
  /** runs each measured upload phase (the PostgreSQL phase takes CPU snapshots around it) */
  aroundUploads?: (payload: Payload, measure: () => Promise<PhaseResult>) => Promise<PhaseResult>
}

export async function runThroughput(target: StoreTarget, o: ThroughputOptions, log: (line: string) => void): Promise<Record<PhaseName, PhaseResult>> {
  const large = await sizePhases(target, o.payloads.large, o.maxUploads.large, o, log)
  const small = await sizePhases(target, o.payloads.small, o.maxUploads.small, o, log)
  return { '1MiB-up': large.up, '1MiB-down': large.down, '4KiB-up': small.up, '4KiB-down': small.down }
}

async function sizePhases(target: StoreTarget, payload: Payload, maxUploads: number, o: ThroughputOptions, log: (line: string) => void) {
  const refs: string[] = []
  let seq = 0
  const uploadOp = async () => {
    refs.push(await target.upload(payload, seq++))
  }
  const common = { concurrency: o.concurrency, bytesPerOp: payload.size }
  flushDirtyPages()
  await runPhase({ ...common, durationMs: o.warmupMs, maxOps: maxUploads, op: uploadOp })
  const measure = () => runPhase({ ...common, durationMs: o.durationMs, maxOps: maxUploads, op: uploadOp })
  const up = o.aroundUploads === undefined ? await measure() : await o.aroundUploads(payload, measure)
  log(line(target.name, `${payload.label} up`, up))
  if (refs.length === 0) throw new Error(`${target.name}: no ${payload.label} upload succeeded: ${up.errorSamples.join('; ')}`)

  const downloadOp = async (n: number) => {
    await target.download(refs[n % refs.length]!, payload, n % o.shaEvery === 0)
  }
  flushDirtyPages()
  await runPhase({ ...common, durationMs: o.warmupMs, op: downloadOp })
  const down = await runPhase({ ...common, durationMs: o.durationMs, op: downloadOp })
  log(line(target.name, `${payload.label} down`, down))
  return { up, down }
}

/**
 * Every phase starts with no dirty page cache: otherwise the writeback of
 * what the previous phase (or target) wrote lands on this one, and a fast
 * writer like nginx slows down whatever runs after it.
 */
function flushDirtyPages(): void {
  execFileSync('sync')
}

function line(target: string, phase: string, r: PhaseResult): string {
  const errors = r.errors > 0 ? `  ERRORS ${r.errors}: ${r.errorSamples[0] ?? ''}` : ''
  return `  ${target.padEnd(16)} ${phase.padEnd(10)} ${r.opsPerSec.toFixed(1).padStart(8)} ops/s ${r.mibPerSec.toFixed(1).padStart(7)} MiB/s  p50 ${r.p50Ms.toFixed(1).padStart(6)} ms  p99 ${r.p99Ms.toFixed(1).padStart(7)} ms${errors}`
}
