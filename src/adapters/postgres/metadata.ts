// MetadataStore on PostgreSQL (production; Patroni behind HAProxy or a
// primary-routing endpoint). Writes and every read that must be current go to
// `url`; `readUrls` (replicas) serve only stale-tolerant reads: listNodes.
// getFile is not one: it decides whether a link is alive (issue 7).
import type { Logger } from '../../log.ts'
import type { DependencyStatus, MetadataStore } from '../../ports.ts'
import { createSqlMetadataStore } from '../sql/metadata-store.ts'
import { migrate } from '../sql/migrate.ts'
import type { QueryOptions, SqlDb, SqlTx } from '../sql/sql-db.ts'
import { describePostgresUrl } from './hosts.ts'
import { createPgDb, type PgDb, type PgDbOptions } from './pg-db.ts'

export interface PostgresMetadataOptions {
  /** the primary (writes): one url, or libpq's multi-host form, of which the member that accepts writes is used */
  url: string
  /** read replicas */
  readUrls?: string[]
  log: Logger
  poolSize?: number
  statementTimeoutMs?: number
  retryForMs?: number
}

/** in: none. out: in_recovery, version, replay_lag_s (null on a primary or before any replay). */
const SERVER_STATE = `
SELECT pg_is_in_recovery() AS in_recovery, current_setting('server_version') AS version,
  CASE WHEN pg_is_in_recovery()
       THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS replay_lag_s`

/** in: none. out: the primary's streaming replicas (empty without pg_monitor rights or replicas). */
const REPLICATION = `
SELECT application_name AS name, client_addr::text AS addr, state, sync_state,
  extract(epoch FROM replay_lag)::float8 AS replay_lag_s
FROM pg_stat_replication ORDER BY application_name`

interface ServerState {
  in_recovery: boolean
  version: string
  replay_lag_s: number | null
}

const STATUS_OPTIONS: QueryOptions = { idempotent: false } // no retries: status must answer fast

/** Round-robin over the replicas; a replica that fails sends the read to the primary. */
function createReader(primary: SqlDb, replicas: PgDb[], log: Logger): SqlDb {
  let next = 0
  return {
    async query<T>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      const replica = replicas[next++ % replicas.length]
      if (replica === undefined) return primary.query<T>(text, params, options)
      try {
        return await replica.query<T>(text, params, { idempotent: false })
      } catch (err) {
        log.warn({ err }, 'read replica failed; reading from the primary')
        return primary.query<T>(text, params, options)
      }
    },
    exec: (text: string) => primary.exec(text),
    transaction: <T>(fn: (tx: SqlTx) => Promise<T>, options?: QueryOptions) => primary.transaction(fn, options),
  }
}

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
  const replicas = (options.readUrls ?? []).map((url) => createPgDb({ ...base, url, retryForMs: 0, poolSize: 5, readWrite: false }))
  const closeAll = async () => {
    await Promise.allSettled([primary.close(), ...replicas.map((r) => r.close())])
  }
  try {
    await migrate(primary, log)
  } catch (err) {
    await closeAll()
    throw err
  }

  /** `endpoint`: the member in use (of several, the one that answered), `url`: every member and the db */
  async function serverStatus(db: PgDb, url: string) {
    try {
      const [state] = await db.query<ServerState>(SERVER_STATE, [], STATUS_OPTIONS)
      return {
        endpoint: db.member(), url: describePostgresUrl(url), ok: true,
        inRecovery: state?.in_recovery, version: state?.version, replayLagSeconds: state?.replay_lag_s ?? null,
      }
    } catch (err) {
      return { endpoint: db.member(), url: describePostgresUrl(url), ok: false, error: err instanceof Error ? err.message : String(err) }
    }
  }

  async function status(): Promise<DependencyStatus> {
    const [main, ...reads] = await Promise.all([
      serverStatus(primary, options.url),
      ...replicas.map((r, i) => serverStatus(r, options.readUrls?.[i] ?? '')),
    ])
    let replication: unknown[] = []
    if (main?.ok === true && main.inRecovery === false) {
      replication = await primary.query(REPLICATION, [], STATUS_OPTIONS).catch(() => [])
    }
    return {
      name: 'metadata',
      kind: 'postgresql',
      // writes need a primary; a reachable server in recovery cannot take them
      ok: main?.ok === true && main.inRecovery === false,
      detail: {
        primary: main,
        replication,
        readReplicas: reads,
        pool: primary.poolStats(),
      },
    }
  }

  log.info({ primary: describePostgresUrl(options.url), readReplicas: (options.readUrls ?? []).map(describePostgresUrl) }, 'metadata store on PostgreSQL')
  return createSqlMetadataStore(primary, {
    reader: replicas.length > 0 ? createReader(primary, replicas, log) : undefined,
    status,
    close: closeAll,
  })
}
