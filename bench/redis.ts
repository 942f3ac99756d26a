// The Redis phase of `npm run bench` (issue 8): 4 KiB and 1 MiB downloads at
// the run's concurrency through a fresh `mayfly up` on real PostgreSQL and
// RabbitMQ with Redis four ways, in the same run: the Sentinel topology
// (scripts/redis-ha.sh), the machine's single Redis, Redis down (a port
// nobody listens on), and the embedded stand-ins. Then a failover timeline
// on the Sentinel topology: 4 KiB downloads from 5 s before a kill -9 of the
// master to 10 s after it, requests per 100 ms and p99 per second.
// Targets: 4 KiB downloads through the Sentinels ≥ the same with Redis down
// (the cache pays for itself), and no second of the timeline with an error.
import { startRedisHa, type RedisHa } from '../test/helpers/redis-ha.ts'
import { runPhase, type PhaseResult } from './load.ts'
import { startMayfly, type MayflyCluster, type Mode } from './mayfly.ts'
import { quantile, KiB, MiB } from './stats.ts'
import { makePayload, type Payload } from './target.ts'
import { freePorts } from '../test/helpers/mayfly-process.ts'

export const REDIS_SETUPS = ['sentinel', 'plain', 'down', 'embedded'] as const
export type RedisSetup = (typeof REDIS_SETUPS)[number]

export interface RedisTimelineSecond {
  /** seconds from the kill (-5 … 9) */
  second: number
  requests: number
  errors: number
  p99Ms: number
  /** the fewest requests that completed in one 100 ms slot of this second */
  minPer100ms: number
}

export interface RedisResult {
  downloads: Record<RedisSetup, { small: PhaseResult; large: PhaseResult }>
  timeline: { promotedAfterMs: number | null; longestGapMs: number; seconds: RedisTimelineSecond[] }
  targets: { cachePaysForItself: { ratio: number; met: boolean }; noSecondWithError: { met: boolean } }
}

export interface RedisPhaseOptions {
  root: string
  concurrency: number
  durationMs: number
  warmupMs: number
  log: (line: string) => void
}

const SMALL = 4 * KiB
const LARGE = MiB

export async function measureRedis(o: RedisPhaseOptions): Promise<RedisResult> {
  const payloads = { small: makePayload('4KiB', SMALL), large: makePayload('1MiB', LARGE) }
  const downloads = {} as RedisResult['downloads']
  let timeline: RedisResult['timeline'] | null = null
  for (const setup of REDIS_SETUPS) {
    const ha = setup === 'sentinel' ? await startRedisHa() : null
    try {
      const { mode, env } = await setupOf(setup, ha)
      const cluster = await startMayfly({ mode, root: o.root, concurrency: o.concurrency, env })
      try {
        const refs = { small: await uploadMany(cluster, payloads.small, 64), large: await uploadMany(cluster, payloads.large, 16) }
        const phase = async (size: 'small' | 'large') => {
          const op = async (n: number) => cluster.target.download(refs[size][n % refs[size].length]!, payloads[size], n % 20 === 0)
          const common = { concurrency: o.concurrency, bytesPerOp: payloads[size].size, op }
          await runPhase({ ...common, durationMs: o.warmupMs })
          return runPhase({ ...common, durationMs: o.durationMs })
        }
        downloads[setup] = { small: await phase('small'), large: await phase('large') }
        for (const size of ['small', 'large'] as const) o.log(line(setup, payloads[size].label, downloads[setup][size]))
        if (ha !== null) timeline = await failoverTimeline(cluster, ha, refs.small, payloads.small, o)
      } finally {
        await cluster.stop()
      }
    } finally {
      await ha?.stop()
    }
  }
  const ratio = downloads.sentinel.small.opsPerSec / downloads.down.small.opsPerSec
  return {
    downloads,
    timeline: timeline!,
    targets: {
      cachePaysForItself: { ratio, met: ratio >= 1 },
      noSecondWithError: { met: timeline!.seconds.every((s) => s.errors === 0) },
    },
  }
}

async function setupOf(setup: RedisSetup, ha: RedisHa | null): Promise<{ mode: Mode; env: Record<string, string> }> {
  switch (setup) {
    case 'sentinel':
      return { mode: 'real', env: ha!.env }
    case 'plain':
      return { mode: 'real', env: {} }
    case 'down':
      return { mode: 'real', env: { MAYFLY_REDIS_URL: `redis://127.0.0.1:${(await freePorts(1))[0]}` } }
    case 'embedded':
      return { mode: 'embedded', env: {} }
  }
}

async function uploadMany(cluster: MayflyCluster, payload: Payload, count: number): Promise<string[]> {
  const refs: string[] = []
  for (let i = 0; i < count; i++) refs.push(await cluster.target.upload(payload, i))
  return refs
}

/** 4 KiB downloads for 15 s; the master killed at 5 s. */
async function failoverTimeline(cluster: MayflyCluster, ha: RedisHa, refs: string[], payload: Payload, o: RedisPhaseOptions): Promise<RedisResult['timeline']> {
  const BEFORE_MS = 5_000
  const AFTER_MS = 10_000
  const done: { at: number; ms: number; ok: boolean }[] = []
  const started = performance.now()
  let killedAt = Number.NaN
  let promotedAt: number | null = null
  const master = await ha.master()
  const kill = (async () => {
    await new Promise((resolve) => setTimeout(resolve, BEFORE_MS))
    await ha.signal(master.name, 'SIGKILL')
    killedAt = performance.now()
    while (performance.now() - killedAt < AFTER_MS) {
      const now = await ha.master().catch(() => master)
      if (now.name !== master.name) {
        promotedAt = performance.now()
        break
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })()
  await runPhase({
    concurrency: o.concurrency,
    durationMs: BEFORE_MS + AFTER_MS,
    bytesPerOp: payload.size,
    op: async (n) => {
      const t0 = performance.now()
      let ok = true
      try {
        await cluster.target.download(refs[n % refs.length]!, payload, n % 20 === 0)
      } catch (err) {
        ok = false
        throw err
      } finally {
        done.push({ at: performance.now(), ms: performance.now() - t0, ok })
      }
    },
  })
  await kill
  const seconds: RedisTimelineSecond[] = []
  for (let s = -BEFORE_MS / 1000; s < AFTER_MS / 1000; s++) {
    const inSecond = done.filter((d) => d.at - killedAt >= s * 1000 && d.at - killedAt < (s + 1) * 1000)
    const slots = Array.from({ length: 10 }, (_, i) => inSecond.filter((d) => Math.floor((d.at - killedAt - s * 1000) / 100) === i).length)
    seconds.push({
      second: s,
      requests: inSecond.length,
      errors: inSecond.filter((d) => !d.ok).length,
      p99Ms: quantile(inSecond.map((d) => d.ms), 0.99),
      minPer100ms: Math.min(...slots),
    })
  }
  const times = done.map((d) => d.at).sort((a, b) => a - b)
  let longestGapMs = 0
  for (let i = 1; i < times.length; i++) longestGapMs = Math.max(longestGapMs, times[i]! - times[i - 1]!)
  const promotedAfterMs = promotedAt === null ? null : (promotedAt as number) - killedAt
  o.log(`  redis failover   master killed ${((killedAt - started) / 1000).toFixed(1)} s in, promoted ${promotedAfterMs === null ? 'never' : `${Math.round(promotedAfterMs)} ms`} later; longest gap between completed downloads ${longestGapMs.toFixed(0)} ms`)
  for (const s of seconds) {
    o.log(`    t${s.second >= 0 ? '+' : ''}${s.second} s  ${String(s.requests).padStart(5)} downloads  ${String(s.errors).padStart(3)} errors  p99 ${s.p99Ms.toFixed(1).padStart(6)} ms  fewest per 100 ms ${s.minPer100ms}`)
  }
  return { promotedAfterMs, longestGapMs, seconds }
}

export function formatRedis(r: RedisResult): string {
  const rows = REDIS_SETUPS.map((s) => {
    const d = r.downloads[s]
    return `  ${s.padEnd(9)} 4 KiB down ${d.small.opsPerSec.toFixed(0).padStart(6)} ops/s (p99 ${d.small.p99Ms.toFixed(1)} ms)   1 MiB down ${d.large.mibPerSec.toFixed(1).padStart(6)} MiB/s (p99 ${d.large.p99Ms.toFixed(1)} ms)`
  })
  const t = r.targets
  const errorSeconds = r.timeline.seconds.filter((s) => s.errors > 0).length
  return [
    'Redis phase (real PostgreSQL and RabbitMQ; Redis as named):',
    ...rows,
    `  target: 4 KiB downloads with Sentinel ≥ with Redis down: ${t.cachePaysForItself.ratio.toFixed(2)}× ${t.cachePaysForItself.met ? 'met' : 'MISSED'}`,
    `  target: no second with an error across a master kill: ${errorSeconds} second(s) with errors, ${t.noSecondWithError.met ? 'met' : 'MISSED'}`,
  ].join('\n')
}

function line(setup: string, label: string, r: PhaseResult): string {
  const errors = r.errors > 0 ? `  ERRORS ${r.errors}: ${r.errorSamples[0] ?? ''}` : ''
  return `  redis ${setup.padEnd(10)} ${label} down ${r.opsPerSec.toFixed(1).padStart(8)} ops/s ${r.mibPerSec.toFixed(1).padStart(7)} MiB/s  p50 ${r.p50Ms.toFixed(1).padStart(6)} ms  p99 ${r.p99Ms.toFixed(1).padStart(7)} ms${errors}`
}

