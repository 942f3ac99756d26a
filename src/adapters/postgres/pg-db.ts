// SqlDb over a pg Pool: error translation, and retries that never apply a
// write twice. A failed attempt is retried (until `retryForMs` has passed)
// when the server provably did nothing (connect failure, read-only
// transaction after a Patroni failover, rollback by deadlock), or when the
// connection broke and the caller marked the work idempotent.
import pg from 'pg'
import type { Logger } from '../../log.ts'
import { isNotApplied, isUnavailable, translateSqlError } from '../sql/errors.ts'
import type { QueryOptions, SqlDb, SqlTx } from '../sql/sql-db.ts'

export interface PgDbOptions {
  url: string
  log: Logger
  /** connections in the pool */
  poolSize?: number
  /** server-side statement_timeout, and the client's read timeout a bit later (ms) */
  statementTimeoutMs?: number
  /** how long a connection attempt may take (ms) */
  connectTimeoutMs?: number
  /** how long retriable failures are retried before Unavailable reaches the caller (ms) */
  retryForMs?: number
}

export interface PgDb extends SqlDb {
  readonly pool: pg.Pool
  close(): Promise<void>
}

/** A failure of pool.connect(): nothing was sent, anything may be retried. */
class ConnectFailed extends Error {}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export function createPgDb(options: PgDbOptions): PgDb {
  const statementTimeoutMs = options.statementTimeoutMs ?? 15_000
  const retryForMs = options.retryForMs ?? 5_000
  const log = options.log
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    statement_timeout: statementTimeoutMs,
    // pg's query_timeout does not cancel on the server; statement_timeout does, this only frees the client
    query_timeout: statementTimeoutMs + 2_000,
    idle_in_transaction_session_timeout: statementTimeoutMs * 2,
    application_name: 'mayfly',
  })
  // an idle client whose server went away: without a listener this would crash the process
  pool.on('error', (err) => log.warn({ err }, 'idle PostgreSQL connection failed'))

  async function connect(): Promise<pg.PoolClient> {
    try {
      return await pool.connect()
    } catch (err) {
      throw new ConnectFailed('could not connect', { cause: err })
    }
  }

  /** Runs `attempt` with retries; every failure leaves as a core error. */
  async function withRetry<T>(attempt: () => Promise<T>, opts: QueryOptions | undefined): Promise<T> {
    const deadline = Date.now() + retryForMs
    for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
      try {
        return await attempt()
      } catch (caught) {
        const connectFailed = caught instanceof ConnectFailed
        const err = connectFailed ? caught.cause : caught
        const retriable = connectFailed || isNotApplied(err) || (opts?.idempotent === true && isUnavailable(err))
        if (!retriable || Date.now() + delay > deadline) throw translateSqlError(err)
        log.warn({ err, retryInMs: delay }, 'PostgreSQL unavailable, retrying')
        await sleep(delay)
      }
    }
  }

  /** Releases the client, destroying it when its connection may be broken or points at a replica. */
  function release(client: pg.PoolClient, err: unknown): void {
    client.release(err !== undefined && (isUnavailable(err) || isNotApplied(err)) ? (err as Error) : undefined)
  }

  function txOf(client: pg.PoolClient): SqlTx {
    return {
      async query<T>(text: string, params?: readonly unknown[]) {
        const result = await client.query(text, params as unknown[] | undefined)
        return result.rows as T[]
      },
      async exec(text: string) {
        await client.query(text)
      },
    }
  }

  async function run<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await connect()
    // a connection that dies under a query fails the query and also emits 'error' on the client,
    // which the pool listens to only while the client is idle: unheard, it would end the process
    const onError = (err: Error) => log.debug({ err }, 'PostgreSQL connection lost during a call')
    client.on('error', onError)
    let failure: unknown
    try {
      return await fn(client)
    } catch (err) {
      failure = err
      throw err
    } finally {
      client.removeListener('error', onError)
      release(client, failure)
    }
  }

  return {
    pool,
    query<T>(text: string, params?: readonly unknown[], opts?: QueryOptions) {
      return withRetry(() => run((client) => txOf(client).query<T>(text, params)), opts)
    },
    exec(text: string) {
      return withRetry(() => run((client) => txOf(client).exec(text)), undefined)
    },
    transaction<T>(fn: (tx: SqlTx) => Promise<T>, opts?: QueryOptions) {
      return withRetry(
        () =>
          run(async (client) => {
            await client.query('BEGIN')
            try {
              const result = await fn(txOf(client))
              await client.query('COMMIT')
              return result
            } catch (err) {
              await client.query('ROLLBACK').catch(() => undefined)
              throw err
            }
          }),
        opts,
      )
    },
    async close() {
      await pool.end()
    },
  }
}
