// One schema over process.env (DESIGN §6), parsed once at start-up. Every
// bad value is reported at once; nothing else reads process.env.
import { isIP } from 'node:net'
import { z } from 'zod'
import { splitPostgresUrl } from './adapters/postgres/hosts.ts'

const GiB = 1024 ** 3

const int = (min: number) => z.coerce.number().int().min(min)
const optionalUrl = z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), z.url().optional())
const list = z
  .string()
  .transform((v) => v.split(',').map((s) => s.trim()).filter((s) => s !== ''))
const blankIsAbsent = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v)
/** "true"/"false" (also 1/0, yes/no); absent: the command's default */
const flag = z.preprocess(
  blankIsAbsent,
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], 'true or false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes')
    .optional(),
)
/** one PostgreSQL url, or libpq's multi-host form (postgres://user@h1:5432,h2:5433/db) */
const postgresUrl = z.string().superRefine((v, ctx) => {
  try {
    splitPostgresUrl(v)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
  }
})
/** comma-separated PostgreSQL urls, each of which may itself list hosts: a new url starts at its scheme */
const postgresUrls = z
  .string()
  .transform((v) => v.split(/,(?=\s*postgres(?:ql)?:\/\/)/i).map((s) => s.trim()).filter((s) => s !== ''))
  .pipe(z.array(postgresUrl))
/** comma-separated amqp:// or amqps:// urls of the brokers of one cluster */
/** comma-separated http(s) urls, at least one */
const httpUrls = list.pipe(z.array(z.url({ protocol: /^https?$/, error: 'an http:// or https:// url' })).min(1))
const amqpUrls = list.pipe(z.array(z.url({ protocol: /^amqps?$/, error: 'an amqp:// or amqps:// url' })).min(1))
/** a rate limit, "<count>/<seconds>" or "<count>" (per defaultSeconds); 0 turns it off */
const rateLimit = (defaultSeconds: number) =>
  z
    .string()
    .regex(/^\s*\d+\s*(\/\s*\d+\s*)?$/, 'a count, or count/seconds (e.g. 30/60); 0 turns the limit off')
    .transform((v) => {
      const [count, seconds] = v.split('/').map((x) => Number(x.trim()))
      return { count: count!, windowMs: (seconds ?? defaultSeconds) * 1000 }
    })
    .refine((l) => l.count === 0 || l.windowMs > 0, 'the window must be at least 1 second')
/** comma-separated IP addresses (v4 or v6) */
const addresses = list.pipe(z.array(z.string().refine((a) => isIP(a) !== 0, 'an IP address')))

export const configSchema = z
  .object({
    /** where a process keeps its data */
    MAYFLY_DATA_DIR: z.string().min(1).default('./data'),
    /** the process's HTTP port */
    MAYFLY_PORT: int(0).max(65535).optional(),
    /** the address to listen on */
    MAYFLY_HOST: z.string().min(1).default('127.0.0.1'),
    /** a storage node's zone */
    MAYFLY_ZONE: z.string().regex(/^[a-z0-9-]{1,32}$/, 'lowercase letters, digits and dashes').default('default'),
    /** shared secret between gateways, workers, replicators and storage nodes */
    MAYFLY_CLUSTER_SECRET: z.string().min(16, 'at least 16 characters').optional(),
    /**
     * where a storage node announces itself and sends heartbeats: a gateway,
     * the load balancer in front of the gateways, or every gateway
     * (comma-separated: each then hears every node itself)
     */
    MAYFLY_CONTROL_URL: z.preprocess(blankIsAbsent, httpUrls.optional()),
    /** the url by which others reach this storage node (or gateway: its heartbeats say it) */
    MAYFLY_ADVERTISE_URL: optionalUrl,
    /** the public url of the gateway, for links in API answers; default: the request's Host */
    MAYFLY_PUBLIC_URL: optionalUrl,
    /** copies kept of every blob */
    MAYFLY_REPLICATION_FACTOR: int(1).max(9).default(3),
    /** copies fsynced before an upload is acknowledged */
    MAYFLY_WRITE_QUORUM: int(1).max(9).default(2),
    /** what copies are kept apart in: zones (distinct zones first, then nodes) or nodes (zones ignored); see core/placement.ts */
    MAYFLY_PLACEMENT: z.enum(['zones', 'nodes']).default('zones'),
    /** seconds a link lives when the upload does not say */
    MAYFLY_DEFAULT_EXPIRES_IN: int(1).default(86400),
    /** the longest life an upload may ask for, seconds */
    MAYFLY_MAX_EXPIRES_IN: int(1).default(2592000),
    /** larger uploads get 413 */
    MAYFLY_MAX_UPLOAD_BYTES: int(1).default(5 * GiB),
    /** seconds between a file's death and the removal of its bytes */
    MAYFLY_DELETE_GRACE_SECONDS: int(0).default(60),
    /** seconds between two sweeps for dead files */
    MAYFLY_SWEEP_INTERVAL_SECONDS: z.coerce.number().positive().default(5),
    /**
     * a gateway silent this long, while another gateway kept beating, counts
     * as dead: the sweeper removes what it was uploading (issue 10)
     */
    MAYFLY_GATEWAY_DEAD_AFTER_SECONDS: z.coerce.number().positive().default(20),
    /** a storage node re-reads every blob once per this period */
    MAYFLY_SCRUB_INTERVAL_SECONDS: int(1).default(604800),
    /** a silent node is suspect (no new work goes to it) after this many seconds */
    MAYFLY_NODE_SUSPECT_AFTER_SECONDS: z.coerce.number().positive().default(2),
    /** a silent node is down (its blobs re-replicated) after this many seconds */
    MAYFLY_NODE_DOWN_AFTER_SECONDS: z.coerce.number().positive().default(300),
    /** the replication manager copies at most this many MiB per second to repair, drain and rebalance */
    MAYFLY_REPAIR_MIB_PER_SECOND: z.coerce.number().positive().default(40),
    /** copies the replication manager runs at once */
    MAYFLY_REPAIR_CONCURRENCY: int(1).max(64).default(4),
    /** the replication manager checks every node's inventory against the metadata once per this period */
    MAYFLY_AUDIT_INTERVAL_SECONDS: z.coerce.number().positive().default(3600),
    /** a blob on a node that no metadata knows of is deleted after it has been seen unknown this long */
    MAYFLY_ORPHAN_GRACE_SECONDS: z.coerce.number().nonnegative().default(900),
    /** more such blobs due at once on one node than this are held for an operator (`mayfly orphans`), none deleted */
    MAYFLY_ORPHAN_HOLD_ABOVE: int(0).default(20),
    /** the replication manager's lease; a standby takes over within about this long after the leader dies */
    MAYFLY_LEADER_LEASE_SECONDS: z.coerce.number().min(1).default(5),
    /** storage node heartbeat period, milliseconds */
    MAYFLY_HEARTBEAT_INTERVAL_MS: int(50).default(1000),
    /** a call to a storage node that sends or answers nothing for this long fails (ms) */
    MAYFLY_NODE_TIMEOUT_MS: int(100).default(5000),
    /** a client that sends nothing for this long is cut off (ms) */
    MAYFLY_CLIENT_TIMEOUT_MS: int(100).default(30000),
    /** attempts of a job before it goes to the dead-letter queue */
    MAYFLY_JOB_MAX_ATTEMPTS: int(1).default(5),
    /** first retry delay of a failed job, doubled on every attempt (ms) */
    MAYFLY_JOB_RETRY_DELAY_MS: int(1).default(1000),
    /** jobs a worker runs at once */
    MAYFLY_WORKER_CONCURRENCY: int(1).default(2),
    /** seconds file metadata stays in the cache */
    MAYFLY_CACHE_TTL_SECONDS: int(1).default(30),
    /**
     * per client address: uploads, downloads (of the original) and wrong
     * password guesses on protected links (a right one gives its try back),
     * "<count>/<seconds>"; 0 turns one off. The cluster's own traffic (the
     * cluster secret, storage nodes, health checks) is never counted.
     */
    MAYFLY_RATE_LIMIT_UPLOADS: rateLimit(60).default({ count: 60, windowMs: 60_000 }),
    MAYFLY_RATE_LIMIT_DOWNLOADS: rateLimit(60).default({ count: 600, windowMs: 60_000 }),
    MAYFLY_RATE_LIMIT_PASSWORD_ATTEMPTS: rateLimit(900).default({ count: 10, windowMs: 900_000 }),
    /** PostgreSQL for writes, one url or libpq's multi-host form; absent: embedded PGlite */
    MAYFLY_DATABASE_URL: z.preprocess(blankIsAbsent, postgresUrl.optional()),
    /** comma-separated PostgreSQL read endpoints */
    MAYFLY_DATABASE_READ_URLS: postgresUrls.default([]),
    /** a read replica further behind the primary than this is skipped (ms) */
    MAYFLY_DATABASE_MAX_REPLICA_LAG_MS: int(0).default(1000),
    /** connections per process to the primary */
    MAYFLY_DATABASE_POOL_SIZE: int(1).default(10),
    /** the server cancels a statement running longer (ms); a failover wait is bounded apart from it (15 s) */
    MAYFLY_DATABASE_STATEMENT_TIMEOUT_MS: int(100).default(15_000),
    /** Redis; absent (and no sentinels): embedded cache and lock */
    MAYFLY_REDIS_URL: optionalUrl,
    /** host:port,… of Redis Sentinels */
    MAYFLY_REDIS_SENTINELS: list.default([]),
    MAYFLY_REDIS_MASTER_NAME: z.string().default('mayfly'),
    /** RabbitMQ: comma-separated urls of the brokers of one cluster; absent: embedded queue */
    MAYFLY_AMQP_URL: z.preprocess(blankIsAbsent, amqpUrls.optional()),
    /** whether anyone may see /admin, /api/cluster, /api/nodes and /metrics (the cluster secret always may); default: true under `mayfly up`, false for `mayfly gateway` */
    MAYFLY_PUBLIC_STATUS: flag,
    /** addresses of reverse proxies whose X-Forwarded-* headers are believed; none by default */
    MAYFLY_TRUSTED_PROXIES: addresses.default([]),
    /** where the CLI's client commands reach a gateway */
    MAYFLY_URL: z.preprocess(blankIsAbsent, z.url({ protocol: /^https?$/ }).default('http://localhost:5000')),
    /** prefix of queue names, Redis keys and lock names (tests give each run its own) */
    MAYFLY_NAMESPACE: z.string().regex(/^[a-z0-9-]{1,40}$/).default('mayfly'),
    /** pino level */
    MAYFLY_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .refine((c) => c.MAYFLY_WRITE_QUORUM <= c.MAYFLY_REPLICATION_FACTOR, {
    message: 'MAYFLY_WRITE_QUORUM must not exceed MAYFLY_REPLICATION_FACTOR',
    path: ['MAYFLY_WRITE_QUORUM'],
  })
  .refine((c) => c.MAYFLY_NODE_SUSPECT_AFTER_SECONDS < c.MAYFLY_NODE_DOWN_AFTER_SECONDS, {
    message: 'MAYFLY_NODE_SUSPECT_AFTER_SECONDS must be less than MAYFLY_NODE_DOWN_AFTER_SECONDS',
    path: ['MAYFLY_NODE_SUSPECT_AFTER_SECONDS'],
  })
  .refine((c) => c.MAYFLY_DEFAULT_EXPIRES_IN <= c.MAYFLY_MAX_EXPIRES_IN, {
    message: 'MAYFLY_DEFAULT_EXPIRES_IN must not exceed MAYFLY_MAX_EXPIRES_IN',
    path: ['MAYFLY_DEFAULT_EXPIRES_IN'],
  })

export type Config = z.infer<typeof configSchema>

export class ConfigError extends Error {
  readonly problems: string[]
  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** Parses the environment; throws ConfigError listing every bad value. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const picked = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('MAYFLY_') && v !== undefined))
  const result = configSchema.safeParse(picked)
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`))
  }
  return result.data
}

/**
 * Parses only `keys` (every other variable takes its default): for the CLI's
 * client commands, which use two or three of these and should not refuse to
 * run over a bad value they never read. A bad value among `keys` still gets
 * the schema's message.
 */
export function loadConfigOf<K extends keyof Config>(keys: readonly K[], env: NodeJS.ProcessEnv = process.env): Pick<Config, K> {
  const config = loadConfig(Object.fromEntries(keys.map((k) => [k, env[k]])))
  return Object.fromEntries(keys.map((k) => [k, config[k]])) as Pick<Config, K>
}
