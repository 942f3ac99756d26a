// MetadataStore on PostgreSQL (production: one server, HAProxy in front of
// Patroni, or the Patroni members in libpq's multi-host form, pg-db.ts).
// Writes and every read that must be current go to the primary; the read
// replicas (read-replicas.ts) serve only reads that tolerate staleness: the
// node list and the dashboard's counts. getFile is not one: it decides
// whether a link is alive (issue 7), and a client reads back what it just
// changed from the primary (read-your-writes).
import type { Logger } from '../../log.ts'
import type { DependencyStatus, MetadataStore } from '../../ports.ts'
import { createSqlMetadataStore } from '../sql/metadata-store.ts'
import { migrate } from '../sql/migrate.ts'
import type { QueryOptions } from '../sql/sql-db.ts'
import { describePostgresUrl } from './hosts.ts'
import { createPgDb, type PgDbOptions } from './pg-db.ts'
import { createReplicaReader } from './read-replicas.ts'

export interface PostgresMetadataOptions {
  /** the primary (writes): one url, or libpq's multi-host form, of which the member that accepts writes is used */
  url: string
  /** read replicas */
  readUrls?: string[]
  /** a read replica further behind than this is skipped (ms) */
  maxReplicaLagMs?: number
  log: Logger
  poolSize?: number
  statementTimeoutMs?: number
  retryForMs?: number
}

/** in: none. out: in_recovery, version, timeline (on a primary), lsn. */
const SERVER_STATE = `
SELECT pg_is_in_recovery() AS in_recovery, current_setting('server_version') AS version,
  CASE WHEN pg_is_in_recovery() THEN NULL
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS timeline`

/** in: none. out: the primary's streaming replicas (empty without pg_monitor rights or replicas). */
const REPLICATION = `
SELECT application_name AS name, client_addr::text AS addr, state, sync_state,
  pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS lag_bytes,
  COALESCE(extract(epoch FROM replay_lag)::float8, 0) AS lag_seconds
FROM pg_stat_replication ORDER BY application_name`

interface ServerState {
  in_recovery: boolean
  version: string
  timeline: number | null
}

const STATUS_OPTIONS: QueryOptions = { fast: true }
/** how long status waits for the primary's answer (a frozen server answers nothing) */
const STATUS_TIMEOUT_MS = 2_000

/** `work`, or a rejection after `ms` */
function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
  })
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer))
}
/** a read replica's statements: a slow one falls back to the primary sooner than a write would give up */
const REPLICA_STATEMENT_TIMEOUT_MS = 3_000

export async function createPostgresMetadataStore(options: PostgresMetadataOptions): Promise<MetadataStore> {
  const log = options.log.child({ adapter: 'postgres-metadata' })
  const base: Omit<PgDbOptions, 'url'> = {
    log,
    poolSize: options.poolSize,
    statementTimeoutMs: options.statementTimeoutMs,
    retryForMs: options.retryForMs,
  }
  const primary = createPgDb({ ...base, url: options.url })
  // a read endpoint is a replica, or several: any member that answers will do (never the read-write check)
  const readUrls = options.readUrls ?? []
  const replicas = readUrls.map((url) => ({
    url: describePostgresUrl(url),
    db: createPgDb({ ...base, url, retryForMs: 0, poolSize: 5, readWrite: false, statementTimeoutMs: REPLICA_STATEMENT_TIMEOUT_MS }),
  }))
  const reader = createReplicaReader({ primary, replicas, maxLagMs: options.maxReplicaLagMs ?? 1000, log })
  const closeAll = async () => {
    await reader.close()
    await Promise.allSettled([primary.close(), ...replicas.map((r) => r.db.close())])
  }
  try {
    await migrate(primary, log)
  } catch (err) {
    await closeAll()
    throw err
  }

  async function status(): Promise<DependencyStatus> {
    let problem: string | null = null
    const [state] = await within(primary.query<ServerState>(SERVER_STATE, [], STATUS_OPTIONS), STATUS_TIMEOUT_MS).catch((err: Error) => {
      problem = err.message
      return []
    })
    const writable = state !== undefined && !state.in_recovery
    const topology = primary.topology()
    // with several members every one is probed already; one url (a server, HAProxy) reports its replicas itself
    const members = topology !== null
      ? topology.members.map((m) => ({
          address: m.name, role: m.role, timeline: m.timeline, state: m.receiver ?? (m.role === 'primary' ? 'running' : m.role),
          lag_bytes: m.lagBytes, lag_seconds: m.lagSeconds, error: m.error,
        }))
      : null
    const replication = writable && members === null
      ? await within(primary.query<{ name: string; addr: string; state: string; sync_state: string; lag_bytes: number | null; lag_seconds: number }>(REPLICATION, [], STATUS_OPTIONS), STATUS_TIMEOUT_MS).catch(() => [])
      : []
    return {
      name: 'metadata',
      kind: 'postgresql',
      // writes need a primary; a reachable server in recovery cannot take them
      ok: writable,
      detail: {
        url: describePostgresUrl(options.url),
        primary: writable ? primary.member() : null,
        version: state?.version ?? null,
        timeline: state?.timeline ?? null,
        last_failover_at: topology?.lastSwitchAt?.toISOString() ?? null,
        members,
        replicas: members !== null
          ? members.filter((m) => m.role !== 'primary').map(({ address, state: s, lag_bytes, lag_seconds, error }) => ({ address, state: s, lag_bytes, lag_seconds, error }))
          : replication.map((r) => ({ address: `${r.addr} (${r.name})`, state: r.state, sync_state: r.sync_state, lag_bytes: r.lag_bytes, lag_seconds: r.lag_seconds, error: null })),
        read_replicas: reader.states().map((r) => ({ url: r.url, address: r.address, ok: r.ok, lag_ms: r.lagMs, skipped: r.skipped, error: r.error })),
        pool: primary.poolStats(),
        ...(writable ? {} : { error: problem ?? 'the server is in recovery: it takes no writes' }),
      },
    }
  }

  log.info({ primary: describePostgresUrl(options.url), readReplicas: readUrls.map(describePostgresUrl) }, 'metadata store on PostgreSQL')
  return createSqlMetadataStore(primary, {
    reader: replicas.length > 0 ? reader : undefined,
    status,
    close: closeAll,
  })
}
