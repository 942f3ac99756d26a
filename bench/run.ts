// `npm run bench`: Mayfly against a single-copy nginx baseline on this
// machine, in both modes (real PostgreSQL/Redis/RabbitMQ, and embedded).
// See docs/benchmarks.md for what is measured and how; --help for flags.
//
// Each run: nginx (4 throughput phases), raw sharp on the test photos, then
// for each mode a fresh `mayfly up` (4 throughput phases, image variants).
// Servers are started fresh for every run and stopped before the next target
// starts, so only one thing is measured at a time. Then, once per mode, a
// fresh cluster for the 1 GiB memory phase, and one of four nodes for the
// repair phase (a node holding 1 GiB killed under traffic); then the Redis
// and PostgreSQL phases on the real mode's services. Medians over the runs
// are printed and written to .bench/results-<timestamp>.json.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadPhotos, mayflyVariants, rawSharp, type VariantResult } from './image-variants.ts'
import type { RawRecipe } from './raw-sharp.ts'
import { startMayfly, REPO, type MayflyCluster, type Mode } from './mayfly.ts'
import { measureMemory, type MemoryResult } from './memory.ts'
import { NGINX, startNginx, type NginxBaseline } from './nginx.ts'
import { parseOptions, USAGE, type BenchOptions } from './options.ts'
import { formatPostgres, measurePostgres, type PostgresResult } from './postgres.ts'
import { formatRedis, measureRedis, type RedisResult } from './redis.ts'
import { formatRepair, measureRepair, type RepairResult } from './repair.ts'
import { formatReport, summarize, type RunResult } from './report.ts'
import { KiB, MiB } from './stats.ts'
import { makePayload } from './target.ts'
import { runThroughput, type ThroughputOptions } from './throughput.ts'

const log = (line: string) => console.log(line)

async function main(): Promise<void> {
  let opts: BenchOptions
  try {
    opts = parseOptions(process.argv.slice(2))
  } catch (err) {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`)
    process.exit(2)
  }
  if (opts.repairOnly) return repairOnly(opts)
  if (opts.redisOnly || opts.postgresOnly) return servicePhasesOnly(opts)
  if (!existsSync(NGINX)) throw new Error(`${NGINX} not found: run sh scripts/install-system-deps.sh (Debian nginx-light)`)
  const startedAt = new Date()
  const loadBefore = loadavg()
  const root = await mkdtemp(join(tmpdir(), 'mayfly-bench-'))
  const active = stopOnInterrupt(root)
  const using = async <T extends { stop(): Promise<void> }, R>(start: () => Promise<T>, work: (t: T) => Promise<R>): Promise<R> => {
    const thing = await start()
    active.add(thing)
    try {
      return await work(thing)
    } finally {
      active.delete(thing)
      await thing.stop()
    }
  }

  const tp: ThroughputOptions = {
    concurrency: opts.concurrency,
    durationMs: opts.durationMs,
    warmupMs: opts.warmupMs,
    shaEvery: 20,
    payloads: { large: makePayload('1MiB', MiB), small: makePayload('4KiB', 4 * KiB) },
    maxUploads: { large: 10_000, small: 200_000 },
  }
  const photos = opts.variants ? await loadPhotos() : []
  log(
    `Mayfly benchmark: ${opts.runs} run(s), concurrency ${opts.concurrency}, ${opts.durationMs / 1000} s phases, modes ${opts.modes.join(', ')}; ` +
      `${cpus().length} CPUs, load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}; temp ${root}`,
  )
  const runs: RunResult[] = []
  try {
    for (let r = 1; r <= opts.runs; r++) {
      log(`run ${r}/${opts.runs}`)
      const run: RunResult = { throughput: {}, variants: null }
      run.throughput.nginx = await using(
        () => startNginx(join(root, `nginx-${r}`), opts.concurrency),
        (nginx: NginxBaseline) => runThroughput(nginx.target, tp, log),
      )
      await rm(join(root, `nginx-${r}`), { recursive: true, force: true })
      let raw: Record<RawRecipe, VariantResult> | null = null
      if (opts.variants) {
        raw = { pipelines: await rawSharp(photos, opts.photoCopies, 'pipelines'), chained: await rawSharp(photos, opts.photoCopies, 'chained') }
        for (const [recipe, v] of Object.entries(raw)) {
          log(`  ${`raw sharp ${recipe}`.padEnd(16)} variants   ${v.photosPerSec.toFixed(2)} photos/s (${v.photos} photos in ${v.seconds.toFixed(1)} s)`)
        }
      }
      const mayflyVariantResults: Partial<Record<Mode, VariantResult>> = {}
      for (const mode of opts.modes) {
        await using(
          () => startMayfly({ mode, root, concurrency: opts.concurrency, cpuProfDir: opts.cpuProfDir }),
          async (cluster: MayflyCluster) => {
            run.throughput[cluster.target.name] = await runThroughput(cluster.target, tp, log)
            if (opts.variants) {
              const v = await mayflyVariants(cluster, photos, opts.photoCopies)
              mayflyVariantResults[mode] = v
              log(`  ${cluster.target.name.padEnd(16)} variants   ${v.photosPerSec.toFixed(2)} photos/s (${v.photos} photos in ${v.seconds.toFixed(1)} s, ${v.failed} failed)`)
            }
          },
        )
      }
      if (raw !== null) run.variants = { rawSharp: raw, mayfly: mayflyVariantResults }
      runs.push(run)
    }
    const memory: Partial<Record<Mode, MemoryResult>> = {}
    if (opts.memory) {
      for (const mode of opts.modes) {
        memory[mode] = await using(
          () => startMayfly({ mode, root, concurrency: opts.concurrency, cpuProfDir: opts.cpuProfDir }),
          (cluster: MayflyCluster) => measureMemory(cluster),
        )
        const m = memory[mode]!
        log(`  mayfly-${mode.padEnd(9)} memory     +${m.uploadGrowthMiB.toFixed(1)} MiB upload, +${m.downloadGrowthMiB.toFixed(1)} MiB download`)
      }
    }

    const repair = opts.repair ? await using(() => repairCluster(opts, root), (c) => measureRepair(c, repairOptions(opts))) : null
    const redis = opts.redis && opts.modes.includes('real') ? await measureRedis(redisOptions(opts, root)) : null
    const postgres = opts.postgres && opts.modes.includes('real') ? await measurePostgres(serviceOptions(opts, root, active)) : null

    const summary = summarize(runs, memory, opts.modes)
    const loadAfter = loadavg()
    const header =
      `Mayfly / nginx, median of ${opts.runs} run(s), concurrency ${opts.concurrency}, ${opts.durationMs / 1000} s phases, ` +
      `${startedAt.toISOString()}, load average ${loadBefore[0]!.toFixed(2)} before, ${loadAfter[0]!.toFixed(2)} after`
    log('')
    log(formatReport(summary, opts.modes, memory, header))
    if (repair !== null) log(`\n${formatRepair(repair)}`)
    if (redis !== null) log(`\n${formatRedis(redis)}`)
    if (postgres !== null) log(`\n${formatPostgres(postgres)}`)
    const file = await writeResults(startedAt, { options: opts, loadBefore, loadAfter, runs, memory, summary, repair, redis, postgres })
    log(`\nresults: ${file}`)
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

/** The repair phase's cluster: four nodes; a node is declared lost 10 s after it dies (the phase is about the repair). */
function repairCluster(opts: BenchOptions, root: string): Promise<MayflyCluster> {
  return startMayfly({
    mode: opts.modes.includes('real') ? 'real' : 'embedded',
    root,
    concurrency: opts.concurrency,
    nodes: 4,
    env: { MAYFLY_NODE_DOWN_AFTER_SECONDS: '10', MAYFLY_REPAIR_MIB_PER_SECOND: String(opts.repairCap) },
  })
}

const repairOptions = (opts: BenchOptions) => ({ gib: opts.repairGib, capMiBPerSec: opts.repairCap, log })

const redisOptions = (opts: BenchOptions, root: string) => ({ root, concurrency: opts.concurrency, durationMs: opts.durationMs, warmupMs: opts.warmupMs, log })

const serviceOptions = (opts: BenchOptions, root: string, active: Set<{ stop(): Promise<void> }>) => ({ ...redisOptions(opts, root), active })

type Stoppable = { stop(): Promise<void> }

/**
 * On SIGINT or SIGTERM: stop what is in the returned set (servers, the
 * Patroni cluster, which would otherwise outlive the bench), remove root, exit.
 */
function stopOnInterrupt(root: string): Set<Stoppable> {
  const active = new Set<Stoppable>()
  const interrupt = (signal: string) => {
    console.error(`bench: ${signal}: stopping what was started`)
    void Promise.allSettled([...active].map((a) => a.stop()))
      .then(() => rm(root, { recursive: true, force: true }))
      .finally(() => process.exit(130))
  }
  process.once('SIGINT', () => interrupt('SIGINT'))
  process.once('SIGTERM', () => interrupt('SIGTERM'))
  return active
}

/** `--redis-only` and/or `--postgres-only`: just those phases. */
async function servicePhasesOnly(opts: BenchOptions): Promise<void> {
  const startedAt = new Date()
  const root = await mkdtemp(join(tmpdir(), 'mayfly-bench-'))
  const active = stopOnInterrupt(root)
  try {
    const redis: RedisResult | null = opts.redisOnly ? await measureRedis(redisOptions(opts, root)) : null
    const postgres: PostgresResult | null = opts.postgresOnly ? await measurePostgres(serviceOptions(opts, root, active)) : null
    if (redis !== null) log(`\n${formatRedis(redis)}`)
    if (postgres !== null) log(`\n${formatPostgres(postgres)}`)
    log(`\nresults: ${await writeResults(startedAt, { options: opts, redis, postgres })}`)
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

/** `--repair-only`: just the repair phase. */
async function repairOnly(opts: BenchOptions): Promise<void> {
  const startedAt = new Date()
  const root = await mkdtemp(join(tmpdir(), 'mayfly-bench-'))
  try {
    const cluster = await repairCluster(opts, root)
    let repair: RepairResult
    try {
      repair = await measureRepair(cluster, repairOptions(opts))
    } finally {
      await cluster.stop()
    }
    log(`\n${formatRepair(repair)}`)
    log(`\nresults: ${await writeResults(startedAt, { options: opts, repair })}`)
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

async function writeResults(startedAt: Date, data: Record<string, unknown>): Promise<string> {
  const dir = join(REPO, '.bench')
  await mkdir(dir, { recursive: true })
  const file = join(dir, `results-${startedAt.toISOString().replaceAll(':', '-').replace(/\.\d+Z$/, 'Z')}.json`)
  const git = (args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: REPO, encoding: 'utf8' }).trimEnd()
    } catch {
      return null
    }
  }
  const body = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    commit: git(['rev-parse', 'HEAD']),
    // uncommitted changes to what is measured (other work in this checkout)
    uncommitted: git(['status', '--porcelain', '--', 'src'])?.split('\n').filter((l) => l !== '') ?? null,
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    ...data,
  }
  await writeFile(file, `${JSON.stringify(body, null, 2)}\n`)
  return file
}

main().catch((err: unknown) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  process.exit(1)
})
