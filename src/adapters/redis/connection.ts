// One ioredis client per adapter, with options chosen for failover (a
// Sentinel failover takes seconds, and a write can be lost in it):
// - no offline queue: while disconnected a command fails at once instead of
//   waiting, and nothing queued is replayed later (an INCR applied twice);
// - no resend of commands whose reply was lost, for the same reason;
// - a steady reconnect delay: ioredis' default backs off exponentially and
//   sits idle for seconds after the server is back;
// - short connect and command timeouts, so a dead master costs a bounded wait.
import { Redis, type RedisOptions } from 'ioredis'
import { redactUrl } from '../redact-url.ts'
import type { Logger } from '../../log.ts'
import type { DependencyStatus } from '../../ports.ts'

export interface RedisConnectionOptions {
  /** redis://[user:password@]host:port[/db]; ignored when sentinels are given (its credentials still apply) */
  url?: string
  /** Sentinel addresses; when non-empty the client asks them for the current master of `masterName` */
  sentinels?: { host: string; port: number }[]
  /** the Sentinel master group name (default 'mayfly') */
  masterName?: string
  /** prefix of every key this adapter writes */
  namespace: string
  log: Logger
  /** pause between two reconnect attempts, steady (default 500 ms) */
  reconnectDelayMs?: number
  /** give up a TCP connect after this long (default 1000 ms) */
  connectTimeoutMs?: number
  /** a command without a reply after this long fails (default 500 ms) */
  commandTimeoutMs?: number
}

export interface RedisConnection {
  client: Redis
  /** Resolves once the first connection is ready, or after connectTimeoutMs: never waits twice. */
  firstReady: Promise<void>
  describe(): Record<string, unknown>
  close(): void
}

/** Builds the client. `maxRetriesPerRequest` is per use: 1 for the cache (reads and sets are idempotent), 0 for locks. */
export function connectRedis(opts: RedisConnectionOptions, use: { name: string; maxRetriesPerRequest: number }): RedisConnection {
  const reconnectDelayMs = opts.reconnectDelayMs ?? 500
  const connectTimeoutMs = opts.connectTimeoutMs ?? 1000
  const common: RedisOptions = {
    connectionName: `mayfly-${use.name}`,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: use.maxRetriesPerRequest,
    retryStrategy: () => reconnectDelayMs,
    connectTimeout: connectTimeoutMs,
    commandTimeout: opts.commandTimeoutMs ?? 500,
    // how long close() lets a socket linger before destroying it (default 2 s)
    disconnectTimeout: 200,
    // A master demoted by Sentinel answers writes with READONLY: drop the
    // connection so the Sentinel connector looks up the new master.
    reconnectOnError: (err) => err.message.includes('READONLY'),
  }
  const sentinels = opts.sentinels ?? []
  let client: Redis
  if (sentinels.length > 0) {
    const auth = opts.url ? new URL(opts.url) : null
    client = new Redis({
      ...common,
      sentinels,
      name: opts.masterName ?? 'mayfly',
      username: auth?.username ? decodeURIComponent(auth.username) : undefined,
      password: auth?.password ? decodeURIComponent(auth.password) : undefined,
      sentinelRetryStrategy: () => reconnectDelayMs,
      sentinelCommandTimeout: connectTimeoutMs,
      // Not ioredis' failoverDetector: on +switch-master it disconnects even
      // while the client is reconnecting, which leaves the client ended for
      // good (ioredis 6.0.0, seen in test/contract/cache.test.ts). A dead
      // master drops our socket anyway, and we then ask Sentinel every
      // reconnectDelayMs; a demoted live master answers READONLY (below).
      failoverDetector: false,
    })
  } else {
    client = new Redis(opts.url ?? 'redis://127.0.0.1:6379', common)
  }
  // Safety net: a client that ended without close() having been called
  // (an ioredis path we did not foresee) is started again.
  let closing = false
  client.on('end', () => {
    if (closing) return
    setTimeout(() => {
      if (!closing && client.status === 'end') client.connect().catch(() => {})
    }, reconnectDelayMs).unref()
  })
  const firstReady = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, connectTimeoutMs)
    timer.unref()
    client.once('ready', () => {
      clearTimeout(timer)
      resolve()
    })
  })
  const describe = () =>
    sentinels.length > 0
      ? { mode: 'sentinel', masterName: opts.masterName ?? 'mayfly', sentinels: sentinels.map((s) => `${s.host}:${s.port}`) }
      : { mode: 'standalone', url: redactUrl(opts.url ?? 'redis://127.0.0.1:6379') }
  const close = () => {
    closing = true
    client.disconnect()
  }
  return { client, firstReady, describe, close }
}

/**
 * Logs a fault once per outage (warn) and its end (info), so a dead Redis
 * under load makes two log lines, not one per request.
 */
export function createOutageLog(log: Logger, what: string) {
  let down = false
  return {
    fail(err: unknown): void {
      if (down) return
      down = true
      log.warn({ err }, `${what} unavailable`)
    },
    ok(): void {
      if (!down) return
      down = false
      log.info(`${what} recovered`)
    },
  }
}

/**
 * Runs a command once the connection was first ready, keeping the outage log
 * of `conn` up to date (connection errors feed it too). The error, if any,
 * is rethrown for the caller to turn into its port's answer.
 */
export function createGuard(conn: RedisConnection, log: Logger, what: string) {
  const outage = createOutageLog(log, what)
  conn.client.on('error', (err) => outage.fail(err))
  conn.client.on('ready', () => outage.ok())
  return async function guarded<T>(run: () => Promise<T>): Promise<T> {
    try {
      await conn.firstReady
      const result = await run()
      outage.ok()
      return result
    } catch (err) {
      outage.fail(err)
      throw err
    }
  }
}

/** /ready and /api/cluster view of one Redis connection: role, master and replicas from INFO replication. */
export async function redisStatus(conn: RedisConnection, name: string, kind: string): Promise<DependencyStatus> {
  const { client } = conn
    try {
    await conn.firstReady
    const info = parseInfo(await client.info('replication'))
    const here = client.stream ? `${client.stream.remoteAddress}:${client.stream.remotePort}` : null
    const role = info.role === 'slave' ? 'replica' : info.role
    const replicas = Object.entries(info)
      .filter(([k]) => /^slave\d+$/.test(k))
      .map(([, v]) => {
        const f = Object.fromEntries(v.split(',').map((kv) => kv.split('=') as [string, string]))
        return { address: `${f.ip}:${f.port}`, state: f.state, lag: Number(f.lag) }
      })
    const master = role === 'master' ? here : `${info.master_host}:${info.master_port}`
    return { name, kind, ok: true, detail: { ...conn.describe(), connection: client.status, role, master, connectedTo: here, replicas } }
  } catch (err) {
    return { name, kind, ok: false, detail: { ...conn.describe(), connection: client.status, error: err instanceof Error ? err.message : String(err) } }
  }
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':')
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}
