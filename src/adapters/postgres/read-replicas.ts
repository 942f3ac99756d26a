// Reads that tolerate staleness (the node list, the dashboard's counts) on
// the read replicas of MAYFLY_DATABASE_READ_URLS, and only on those that are
// close behind: every LAG_PROBE_MS each replica says how far it has replayed,
// next to the primary's current WAL position. A replica that has replayed at
// least that far is 0 ms behind; one that has not is as far behind as its
// last replayed commit is old. One further behind than maxLagMs, or that did
// not answer the last probe, is skipped; with none left the read goes to the
// primary. Reads that decide something (is this link alive, is this blob
// anybody's) never come here: they stay on the primary (metadata-store.ts).
import type { Logger } from '../../log.ts'
import type { QueryOptions, SqlDb, SqlTx } from '../sql/sql-db.ts'
import type { PgDb } from './pg-db.ts'
import { lsnBytes } from './primary-locator.ts'

const LAG_PROBE_MS = 500
/** a probe older than this says nothing (the prober is stuck on a frozen server) */
const PROBE_FRESH_MS = 2_000

/** in: none. out: in_recovery, lsn (replayed, or current on a primary), replay_age_s. */
const REPLICA_PROBE = `
SELECT pg_is_in_recovery() AS in_recovery,
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
  extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age_s`
/** in: none. out: lsn, the primary's current WAL position. */
const PRIMARY_LSN = `SELECT pg_current_wal_lsn()::text AS lsn`

export interface ReadReplicaState {
  /** every member and the database of the read url, never credentials */
  url: string
  /** the member that answered */
  address: string
  ok: boolean
  /** how far behind the primary, ms (null: unknown) */
  lagMs: number | null
  /** whether reads go around it now */
  skipped: boolean
  error: string | null
}

export interface ReplicaReader extends SqlDb {
  states(): ReadReplicaState[]
  close(): Promise<void>
}

export interface ReplicaReaderOptions {
  primary: SqlDb
  replicas: { db: PgDb; url: string }[]
  maxLagMs: number
  log: Logger
}

const NO_RETRY: QueryOptions = { idempotent: false }

export function createReplicaReader(options: ReplicaReaderOptions): ReplicaReader {
  const { primary, replicas, maxLagMs, log } = options
  const states = replicas.map((r): ReadReplicaState & { probedAt: number } => ({
    url: r.url, address: r.db.member(), ok: false, lagMs: null, skipped: true, error: 'not probed yet', probedAt: 0,
  }))
  let closed = false

  async function probe(): Promise<void> {
    const [head] = await primary.query<{ lsn: string }>(PRIMARY_LSN, [], NO_RETRY).catch(() => [])
    await Promise.all(replicas.map(async (r, i) => {
      const state = states[i]!
      try {
        const [row] = await r.db.query<{ in_recovery: boolean; lsn: string; replay_age_s: number | null }>(REPLICA_PROBE, [], NO_RETRY)
        const caughtUp = row !== undefined && head !== undefined && lsnBytes(row.lsn) >= lsnBytes(head.lsn)
        const lagMs = caughtUp ? 0 : row?.replay_age_s == null ? null : Math.round(row.replay_age_s * 1000)
        Object.assign(state, { address: r.db.member(), ok: true, lagMs, error: null, probedAt: Date.now() })
      } catch (err) {
        Object.assign(state, { address: r.db.member(), ok: false, lagMs: null, error: err instanceof Error ? err.message : String(err), probedAt: Date.now() })
      }
      const fresh = Date.now() - state.probedAt < PROBE_FRESH_MS
      const wasSkipped = state.skipped
      state.skipped = !state.ok || !fresh || state.lagMs === null || state.lagMs > maxLagMs
      if (state.skipped !== wasSkipped && state.probedAt > 0) {
        log.info({ replica: state.url, lagMs: state.lagMs, error: state.error }, state.skipped ? 'read replica skipped' : 'read replica in use')
      }
    }))
  }

  async function loop(): Promise<void> {
    while (!closed) {
      await probe().catch((err: unknown) => log.warn({ err }, 'probing the read replicas failed'))
      await new Promise((resolve) => setTimeout(resolve, LAG_PROBE_MS).unref())
    }
  }
  const running = replicas.length > 0 ? loop() : Promise.resolve()

  let next = 0
  /** the next replica in turn that is close behind, fresh and answering */
  function pick(): PgDb | null {
    for (let tried = 0; tried < replicas.length; tried++) {
      const i = next++ % replicas.length
      const state = states[i]!
      if (!state.skipped && Date.now() - state.probedAt < PROBE_FRESH_MS) return replicas[i]!.db
    }
    return null
  }

  return {
    async query<T>(text: string, params?: readonly unknown[], queryOptions?: QueryOptions) {
      const replica = pick()
      if (replica === null) return primary.query<T>(text, params, queryOptions)
      try {
        return await replica.query<T>(text, params, NO_RETRY)
      } catch (err) {
        log.warn({ err }, 'read replica failed; reading from the primary')
        return primary.query<T>(text, params, queryOptions)
      }
    },
    exec: (text: string) => primary.exec(text),
    transaction: <T>(fn: (tx: SqlTx) => Promise<T>, queryOptions?: QueryOptions) => primary.transaction(fn, queryOptions),
    states: () => states.map(({ probedAt: _, ...s }) => s),
    async close() {
      closed = true
      await running
    },
  }
}
