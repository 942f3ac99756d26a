// SqlDb over pg pools: error translation, retries that never apply a write
// twice, and the members of a multi-host url. A failed attempt is retried
// (until `retryForMs` has passed) when the server provably did nothing
// (connect failure, read-only transaction after a Patroni failover, rollback
// by deadlock), or when the connection broke and the caller marked the work
// idempotent.
//
// Members (libpq's multi-host url, hosts.ts): one pool each. With `readWrite`
// (libpq's target_session_attrs=read-write) a PrimaryLocator probes every
// member and names the primary (primary-locator.ts: the one that takes
// writes on the highest timeline, so an orphaned old primary never wins);
// work waits for it (up to `retryForMs`) while none is known; when it moves,
// every connection to the old one is dropped, in-flight ones included (their
// writes are replayed or looked up, never trusted). A new connection still
// asks the server whether it takes writes, and one that meets a read-only
// transaction (demoted under it) sends the locator probing at once. Without
// `readWrite` the members are tried in turn from the last one that gave a
// connection, as libpq does.
//
// A commit that a synchronous replica never confirmed (PostgreSQL cancelled
// the wait, and says so only in a WARNING) is an unknown outcome, not a
// success: it fails with 08007 and is replayed like a lost answer.
import pg from 'pg'
import { Unavailable } from '../../core/errors.ts'
import type { Logger } from '../../log.ts'
import { isNotApplied, isUnavailable, translateSqlError } from '../sql/errors.ts'
import type { QueryOptions, SqlDb, SqlTx } from '../sql/sql-db.ts'
import { memberName, splitPostgresUrl, wantsReadWrite } from './hosts.ts'
import { createPrimaryLocator, type MemberState } from './primary-locator.ts'

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
  /** how long retriable failures are retried, and a primary awaited, before Unavailable reaches the caller (ms) */
  retryForMs?: number
}

export interface PgTopology {
  /** every member as the last probe found it */
  members: MemberState[]
  /** when the primary last moved from one member to another */
  lastSwitchAt: Date | null
}

export interface PgDb extends SqlDb {
  /** host:port of the member new connections try first, never credentials */
  member(): string
  /** connections over every member's pool */
  poolStats(): { total: number; idle: number; waiting: number }
  /** with readWrite: what the primary locator knows; else null */
  topology(): PgTopology | null
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

/**
 * PostgreSQL's only word that a commit's wait for a synchronous replica was
 * cancelled (statement_timeout, a terminated backend): the transaction
 * committed locally and may not survive a failover.
 */
const SYNC_WAIT_CANCELLED = /canceling (the )?wait for synchronous replication/i

/** A commit no synchronous replica confirmed: its outcome is unknown (SQLSTATE transaction_resolution_unknown). */
class CommitUnconfirmed extends Error {
  readonly code = '08007'
}

interface Member {
  name: string
  url: string
  pool: pg.Pool
  /** clients handed out and not yet released */
  inUse: Set<pg.PoolClient>
}

/** libpq's check for target_session_attrs=read-write: `on` on a standby and in a read-only session */
async function requireWritable(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only')
  if (rows[0]?.transaction_read_only !== 'off') throw new ReadOnlyMember('read-only (a replica, or a primary being demoted)')
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export function createPgDb(options: PgDbOptions): PgDb {
  const statementTimeoutMs = options.statementTimeoutMs ?? 15_000
  const retryForMs = options.retryForMs ?? 15_000
  const log = options.log
  const readWrite = options.readWrite ?? wantsReadWrite(options.url)

  function createPool(url: string): pg.Pool {
    const pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      // startup parameters: the server enforces them (pg's query_timeout only frees the client)
      statement_timeout: statementTimeoutMs,
      query_timeout: statementTimeoutMs + 2_000,
      idle_in_transaction_session_timeout: statementTimeoutMs * 2,
      application_name: 'mayfly',
      // runs on every new connection before it is used; a rejection drops it
      onConnect: readWrite ? requireWritable : undefined,
    })
    // an idle client whose server went away: without a listener this would crash the process
    pool.on('error', (err) => log.warn({ err }, 'idle PostgreSQL connection failed'))
    return pool
  }

  const members: Member[] = splitPostgresUrl(options.url).map((url) => ({
    name: memberName(url), url, pool: createPool(url), inUse: new Set(),
  }))

  /** Every connection to a member that is no longer the primary goes, those in use included. */
  function retire(member: Member): void {
    const old = member.pool
    member.pool = createPool(member.url)
    for (const client of member.inUse) void client.end().catch(() => undefined)
    old.end().catch(() => undefined)
  }

  const locator = readWrite
    ? createPrimaryLocator({
        urls: members.map((m) => m.url),
        names: members.map((m) => m.name),
        log,
        onSwitch: (from) => {
          if (from !== null) retire(members[from]!)
        },
      })
    : null
  /** without a locator: the member new connections try first, the last one that gave one */
  let current = 0

  /**
   * New connections try the member after `member` (unless a concurrent
   * failure moved on already). A member whose pool was only full moves on
   * too; the scan comes back round to it. With a locator: it probes now.
   */
  function moveOn(member: Member): void {
    const index = members.indexOf(member)
    if (locator !== null) locator.suspect(index)
    else if (index === current) current = (current + 1) % members.length
  }

  /** The primary's member once one is known (waiting until `deadline`), or the next one of the scan. */
  async function connect(deadline: number): Promise<{ client: pg.PoolClient; member: Member }> {
    if (locator !== null) {
      const index = await locator.primaryWithin(deadline - Date.now())
      if (index === null) {
        const seen = locator.members().map((m) => `${m.name}: ${m.error ?? (m.role === 'replica' ? 'read-only (in recovery)' : m.role)}`).join('; ')
        throw new ConnectFailed(`no member of the database url accepts writes (${seen})`)
      }
      const member = members[index]!
      try {
        return { client: await member.pool.connect(), member }
      } catch (err) {
        moveOn(member)
        throw new ConnectFailed(`${member.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
      }
    }
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
    throw new ConnectFailed(`no member of the database url answers (${failures.join('; ')})`, { cause: last })
  }

  /** Runs `attempt` with retries; every failure leaves as a core error. */
  async function withRetry<T>(attempt: (deadline: number) => Promise<T>, opts: QueryOptions | undefined): Promise<T> {
    const deadline = Date.now() + (opts?.fast === true ? 0 : retryForMs)
    // with a locator the waiting is done in connect(), which hears of a new primary at once
    const maxDelay = locator === null ? 250 : 100
    for (let delay = 50; ; delay = Math.min(delay * 2, maxDelay)) {
      try {
        return await attempt(deadline)
      } catch (caught) {
        const connectFailed = caught instanceof ConnectFailed
        const err = connectFailed ? (caught.cause ?? caught) : caught
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
   * connection) sends new connections on (moveOn).
   */
  function release(client: pg.PoolClient, member: Member, err: unknown): void {
    member.inUse.delete(client)
    const code = (err as { code?: unknown } | undefined)?.code
    if (readWrite && (code === '25006' || code === '08007')) moveOn(member)
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

  async function run<T>(deadline: number, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const { client, member } = await connect(deadline)
    member.inUse.add(client)
    // a connection that dies under a query fails the query and also emits 'error' on the client,
    // which the pool listens to only while the client is idle: unheard, it would end the process
    const onError = (err: Error) => log.debug({ err }, 'PostgreSQL connection lost during a call')
    let unconfirmed: string | null = null
    const onNotice = (notice: { message?: string }) => {
      if (notice.message !== undefined && SYNC_WAIT_CANCELLED.test(notice.message)) unconfirmed = notice.message
    }
    client.on('error', onError)
    client.on('notice', onNotice)
    let failure: unknown
    try {
      const result = await fn(client)
      if (unconfirmed !== null) throw new CommitUnconfirmed(`${member.name}: no synchronous replica confirmed the commit (${unconfirmed})`)
      return result
    } catch (err) {
      failure = err
      throw err
    } finally {
      client.removeListener('error', onError)
      client.removeListener('notice', onNotice)
      release(client, member, failure)
    }
  }

  return {
    member() {
      if (locator === null) return members[current]!.name
      const index = locator.primary()
      return index === null ? 'none' : members[index]!.name
    },
    topology: () => (locator === null ? null : { members: locator.members(), lastSwitchAt: locator.lastSwitchAt() }),
    poolStats() {
      const sum = (count: (pool: pg.Pool) => number) => members.reduce((n, m) => n + count(m.pool), 0)
      return { total: sum((p) => p.totalCount), idle: sum((p) => p.idleCount), waiting: sum((p) => p.waitingCount) }
    },
    query<T>(text: string, params?: readonly unknown[], opts?: QueryOptions) {
      return withRetry((deadline) => run(deadline, (client) => txOf(client).query<T>(text, params)), opts)
    },
    exec(text: string) {
      return withRetry((deadline) => run(deadline, (client) => txOf(client).exec(text)), undefined)
    },
    transaction<T>(fn: (tx: SqlTx) => Promise<T>, opts?: QueryOptions) {
      return withRetry(
        (deadline) =>
          run(deadline, async (client) => {
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
      await locator?.close()
      await Promise.all(members.map((m) => m.pool.end()))
    },
  }
}
