// Driver errors -> core errors, at the adapter boundary (STYLE: services never
// see a pg or PGlite error). Both drivers put the SQLSTATE in `code`; node's
// socket errors put an errno name there.
import { Conflict, MayflyError, NotFound, Unavailable } from '../../core/errors.ts'

/** SQLSTATEs after which the server provably applied nothing, so any statement may be retried. */
const NOT_APPLIED = new Set([
  '25006', // read_only_sql_transaction: a replica, or a primary being demoted/promoted by Patroni
  '57P03', // cannot_connect_now: starting up or shutting down
  '53300', // too_many_connections
  '40001', // serialization_failure: the transaction was rolled back
  '40P01', // deadlock_detected: the transaction was rolled back
])

const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])

const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'Client has encountered a connection error',
  'Client was closed',
  'Cannot use a pool after calling end',
  'PGlite is closed',
]

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

/** The server did nothing with the statement; re-running it cannot double an effect. */
export function isNotApplied(err: unknown): boolean {
  const code = codeOf(err)
  return code !== undefined && NOT_APPLIED.has(code)
}

/** The database cannot be reached or is not serving (failover, restart, network). */
export function isUnavailable(err: unknown): boolean {
  const code = codeOf(err)
  if (code !== undefined) {
    if (NOT_APPLIED.has(code) || SOCKET_CODES.has(code)) return true
    if (code.startsWith('08')) return true // connection_exception class
    if (code === '57P01' || code === '57P02') return true // admin/crash shutdown
    if (code === '57014') return true // query_canceled: statement_timeout
  }
  const message = err instanceof Error ? err.message : ''
  return UNAVAILABLE_MESSAGES.some((m) => message.includes(m))
}

export function translateSqlError(err: unknown): Error {
  if (err instanceof MayflyError) return err
  const code = codeOf(err)
  if (code === '23505') return new Conflict('already exists', 'conflict')
  if (code === '23503') return new NotFound('a referenced row does not exist')
  if (isUnavailable(err)) {
    return new Unavailable('the metadata store is unavailable', 'unavailable', { cause: err })
  }
  return err instanceof Error ? err : new Error(String(err))
}
