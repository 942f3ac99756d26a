// The load generator: `concurrency` loops issue one operation after another
// until the phase's time is up (or maxOps were issued) and record the latency
// of each success. An operation fails by throwing; failures are counted, a
// few of their messages kept, and never enter the latency figures.
import { createHash } from 'node:crypto'
import { Agent, type Dispatcher } from 'undici'
import { quantile, MiB } from './stats.ts'

export interface PhaseSpec {
  concurrency: number
  durationMs: number
  /** stop issuing after this many operations even if time is left (bounds disk use) */
  maxOps?: number
  /** bytes each successful operation moves (for MiB/s) */
  bytesPerOp: number
  op: (seq: number) => Promise<void>
}

export interface PhaseResult {
  ops: number
  errors: number
  errorSamples: string[]
  seconds: number
  opsPerSec: number
  mibPerSec: number
  p50Ms: number
  p99Ms: number
}

export async function runPhase(spec: PhaseSpec): Promise<PhaseResult> {
  const latencies: number[] = []
  const errorSamples: string[] = []
  let errors = 0
  let issued = 0
  const maxOps = spec.maxOps ?? Number.POSITIVE_INFINITY
  const started = performance.now()
  const deadline = started + spec.durationMs
  const loop = async () => {
    while (performance.now() < deadline && issued < maxOps) {
      const seq = issued++
      const t0 = performance.now()
      try {
        await spec.op(seq)
        latencies.push(performance.now() - t0)
      } catch (err) {
        errors++
        if (errorSamples.length < 5) errorSamples.push(err instanceof Error ? err.message : String(err))
        // a target that fails at once (refused connections) must not turn this into a busy loop
        await new Promise((r) => setTimeout(r, 10))
      }
    }
  }
  await Promise.all(Array.from({ length: spec.concurrency }, loop))
  const seconds = (performance.now() - started) / 1000
  const ops = latencies.length
  return {
    ops,
    errors,
    errorSamples,
    seconds,
    opsPerSec: ops / seconds,
    mibPerSec: (ops * spec.bytesPerOp) / MiB / seconds,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
  }
}

/** One keep-alive connection pool per target, as many connections as loops. */
export function createClient(concurrency: number): Agent {
  return new Agent({
    connections: concurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 600_000,
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  })
}

/**
 * Reads a response body to its end and checks it: the length always, the
 * sha256 when `sha256` is given (the sampled downloads). Both targets' downloads
 * go through this, so the client's cost is the same for both.
 */
export async function readChecked(body: Dispatcher.ResponseData['body'], length: number, sha256: string | null): Promise<void> {
  const hash = sha256 === null ? null : createHash('sha256')
  let received = 0
  for await (const chunk of body as AsyncIterable<Buffer>) {
    received += chunk.length
    hash?.update(chunk)
  }
  if (received !== length) throw new Error(`download length ${received}, expected ${length}`)
  if (hash !== null && hash.digest('hex') !== sha256) throw new Error('download sha256 mismatch')
}

/** Throws with the status and the start of the body unless the status is one of `ok`. */
export async function expectStatus(res: Dispatcher.ResponseData, ok: readonly number[], what: string): Promise<void> {
  if (ok.includes(res.statusCode)) return
  const text = await res.body.text().catch(() => '')
  throw new Error(`${what}: HTTP ${res.statusCode} ${text.slice(0, 200)}`)
}
