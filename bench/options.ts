// Command line of `npm run bench` (node bench/run.ts [flags]).
import { parseArgs } from 'node:util'

export interface BenchOptions {
  runs: number
  durationMs: number
  warmupMs: number
  concurrency: number
  modes: ('real' | 'embedded')[]
  memory: boolean
  variants: boolean
  photoCopies: number
  cpuProfDir: string | undefined
  quick: boolean
  repair: boolean
  /** only the repair phase */
  repairOnly: boolean
  /** GiB the lost node holds in the repair phase */
  repairGib: number
  /** MAYFLY_REPAIR_MIB_PER_SECOND in the repair phase */
  repairCap: number
  /** the Redis phase (bench/redis.ts) */
  redis: boolean
  /** only the Redis phase */
  redisOnly: boolean
  /** the PostgreSQL phase (bench/postgres.ts) */
  postgres: boolean
  /** only the PostgreSQL phase */
  postgresOnly: boolean
}

export const USAGE = `npm run bench -- [flags]
  --quick             smoke run (~1-2 min): 1 run, 2 s phases, photos once, no memory phase
  --runs N            repetitions of the throughput and variant phases (default 3; medians reported)
  --duration S        seconds per measured phase (default 5; quick 2)
  --warmup S          unmeasured seconds before each phase (default 1; quick 0.5)
  --concurrency N     requests in flight (default 16)
  --modes LIST        real,embedded (default both; targets are judged on real)
  --photo-copies N    uploads of each test photo in the variant phase (default 3; quick 1)
  --no-memory         skip the 1 GiB memory phase (default on, off with --quick)
  --memory            run the memory phase even with --quick
  --no-variants       skip the image variant phase
  --no-repair         skip the repair phase (default on, off with --quick)
  --repair            run the repair phase even with --quick
  --repair-only       only the repair phase (no nginx, throughput, variants or memory)
  --repair-gib N      GiB held by the node that is killed in the repair phase (default 1)
  --repair-cap N      the repair bandwidth cap, MiB/s (default 40, the product's default)
  --no-redis          skip the Redis phase (default on, off with --quick; needs the real mode's services)
  --redis             run the Redis phase even with --quick
  --redis-only        only the Redis phase
  --no-postgres       skip the PostgreSQL phase (default on, off with --quick; needs the real mode's services)
  --postgres          run the PostgreSQL phase even with --quick
  --postgres-only     only the PostgreSQL phase (with --redis-only: those two)
  --cpu-prof DIR      V8 CPU profiles of the mayfly processes into DIR (summarise with bench/profile-summary.ts)
  --help`

export function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      concurrency: { type: 'string' },
      modes: { type: 'string' },
      'photo-copies': { type: 'string' },
      memory: { type: 'boolean' },
      'no-memory': { type: 'boolean' },
      'no-variants': { type: 'boolean', default: false },
      repair: { type: 'boolean' },
      'repair-only': { type: 'boolean', default: false },
      'no-repair': { type: 'boolean' },
      'repair-gib': { type: 'string' },
      'repair-cap': { type: 'string' },
      'cpu-prof': { type: 'string' },
      redis: { type: 'boolean' },
      'no-redis': { type: 'boolean' },
      'redis-only': { type: 'boolean', default: false },
      postgres: { type: 'boolean' },
      'no-postgres': { type: 'boolean' },
      'postgres-only': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const quick = values.quick
  const num = (v: string | undefined, fallback: number, name: string, min: number) => {
    if (v === undefined) return fallback
    const n = Number(v)
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${v}`)
    return n
  }
  const modes = (values.modes ?? 'real,embedded').split(',').map((m) => m.trim())
  for (const m of modes) if (m !== 'real' && m !== 'embedded') throw new Error(`--modes: unknown mode ${m}`)
  return {
    quick,
    runs: Math.round(num(values.runs, quick ? 1 : 3, 'runs', 1)),
    durationMs: num(values.duration, quick ? 2 : 5, 'duration', 0.1) * 1000,
    warmupMs: num(values.warmup, quick ? 0.5 : 1, 'warmup', 0) * 1000,
    concurrency: Math.round(num(values.concurrency, 16, 'concurrency', 1)),
    modes: modes as ('real' | 'embedded')[],
    memory: values['no-memory'] === true ? false : (values.memory ?? !quick),
    variants: !values['no-variants'],
    photoCopies: Math.round(num(values['photo-copies'], quick ? 1 : 3, 'photo-copies', 1)),
    cpuProfDir: values['cpu-prof'],
    repair: values['repair-only'] || (values['no-repair'] === true ? false : (values.repair ?? !quick)),
    repairOnly: values['repair-only'],
    repairGib: num(values['repair-gib'], 1, 'repair-gib', 0.01),
    repairCap: num(values['repair-cap'], 40, 'repair-cap', 0.1),
    redis: values['redis-only'] || (values['no-redis'] === true ? false : (values.redis ?? !quick)),
    redisOnly: values['redis-only'],
    postgres: values['postgres-only'] || (values['no-postgres'] === true ? false : (values.postgres ?? !quick)),
    postgresOnly: values['postgres-only'],
  }
}
