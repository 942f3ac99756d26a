// SqlDb over pg pools: error translation, retries that never apply a write
// twice, and the members of a multi-host url. A failed attempt is retried
// (until `retryForMs` has passed) when the server provably did nothing
// (connect failure, read-only transaction after a Patroni failover, rollback
// by deadlock), or when the connection broke and the caller marked the work
// idempotent.
//
// Members (libpq's multi-host url, hosts.ts): one pool each, tried in turn
// from the last one that gave a connection, as libpq does. With `readWrite`
// (libpq's target_session_attrs=read-write) a new connection asks the server
// whether it takes writes and is dropped when it does not (a replica, a
// demoted primary), so the scan skips it; a connection that meets a read-only
// transaction later (the member was demoted under it) is dropped and moves
// the scan on, which is how a new primary is found after a failover.
import pg from 'pg'
import { Unavailable } from '../../core/errors.ts'
import type { Logger } from '../../log.ts'
import { isNotApplied, isUnavailable, translateSqlError } from '../sql/errors.ts'
import type { QueryOptions, SqlDb, SqlTx } from '../sql/sql-db.ts'
import { memberName, splitPostgresUrl, wantsReadWrite } from './hosts.ts'

export interface PgDbOptions {
  /** one url, or libpq's multi-host form (every member is tried in turn) */
  url: string
  /** only a member that accepts writes will do; default: as the url says (hosts.ts wantsReadWrite) */
  readWrite?: boolean
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
  /** host:port of the member new connections try first, never credentials */
  member(): string
  /** connections over every member's pool */
  poolStats(): { total: number; idle: number; waiting: number }
  close(): Promise<void>
}

/** No member gave a connection: nothing was sent, anything may be retried. */
class ConnectFailed extends Error {}

/**
 * A member that answered but takes no writes. Its code is the SQLSTATE a
 * write there would have met (read_only_sql_transaction): it is the same
 * condition, found before anything was sent.
 */
class ReadOnlyMember extends Error {
  readonly code = '25006'
}

interface Member {
  name: string
  pool: pg.Pool
}

/** libpq's check for target_session_attrs=read-write: `on` on a standby and in a read-only session */
async function requireWritable(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only')
  if (rows[0]?.transaction_read_only !== 'off') throw new ReadOnlyMember('read-only (a replica, or a primary being demoted)')
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export function createPgDb(options: PgDbOptions): PgDb {
  const statementTimeoutMs = options.statementTimeoutMs ?? 15_000
  const retryForMs = options.retryForMs ?? 5_000
  const log = options.log
  const readWrite = options.readWrite ?? wantsReadWrite(options.url)
  const members: Member[] = splitPostgresUrl(options.url).map((url) => {
    const pool = new pg.Pool({
      connectionString: url,
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
      // runs on every new connection before it is used; a rejection drops it
      onConnect: readWrite ? requireWritable : undefined,
    })
    // an idle client whose server went away: without a listener this would crash the process
    pool.on('error', (err) => log.warn({ err }, 'idle PostgreSQL connection failed'))
    return { name: memberName(url), pool }
  })
  /** the member new connections try first: the last one that gave one */
  let current = 0

  /**
   * New connections try the member after `member` (unless a concurrent
   * failure moved on already). A member whose pool was only full moves on
   * too; the scan comes back round to it.
   */
  function moveOn(member: Member): void {
    if (members[current] === member) current = (current + 1) % members.length
  }

  /** A connection from the first member, from `current` on, that gives one (and takes writes, with readWrite). */
  async function connect(): Promise<{ client: pg.PoolClient; member: Member }> {
    const failures: string[] = []
    let last: unknown
    for (let tried = 0; tried < members.length; tried++) {
      const member = members[current]!
      try {
        return { client: await member.pool.connect(), member }
      } catch (err) {
        failures.push(`${member.name}: ${err instanceof Error ? err.message : String(err)}`)
        last = err
        moveOn(member)
      }
    }
    const what = readWrite ? 'accepts writes' : 'answers'
    throw new ConnectFailed(`no member of the database url ${what} (${failures.join('; ')})`, { cause: last })
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
        if (connectFailed && Date.now() + delay > deadline) {
          throw new Unavailable(`the metadata store is unavailable: ${caught.message}`, 'unavailable', { cause: err })
        }
        if (!retriable || Date.now() + delay > deadline) throw translateSqlError(err)
        log.warn({ err, retryInMs: delay }, 'PostgreSQL unavailable, retrying')
        await sleep(delay)
      }
    }
  }

  /**
   * Releases the client, destroying it when its connection may be broken or
   * points at a replica; a member found read-only this way (demoted under the
   * connection) sends new connections on to the next member.
   */
  function release(client: pg.PoolClient, member: Member, err: unknown): void {
    if (readWrite && (err as { code?: unknown } | undefined)?.code === '25006') moveOn(member)
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
    const { client, member } = await connect()
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
      release(client, member, failure)
    }
  }

  return {
    member: () => members[current]!.name,
    poolStats() {
      const sum = (count: (pool: pg.Pool) => number) => members.reduce((n, m) => n + count(m.pool), 0)
      return { total: sum((p) => p.totalCount), idle: sum((p) => p.idleCount), waiting: sum((p) => p.waitingCount) }
    },
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
      await Promise.all(members.map((m) => m.pool.end()))
    },
  }
}
