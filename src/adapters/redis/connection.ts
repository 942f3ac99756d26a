// One ioredis client per adapter, with options chosen for failover (a
// Sentinel failover takes seconds, and a write can be lost in it):
// - no offline queue: while disconnected a command fails at once instead of
//   waiting, and nothing queued is replayed later (an INCR applied twice);
// - no resend of commands whose reply was lost, for the same reason, and no
//   retry of a command caught by a dropped connection: it fails at once
//   (a retry waits for the reconnect; every request in flight would stall);
// - a steady reconnect delay: ioredis' default backs off exponentially and
//   sits idle for seconds after the server is back;
// - short connect and command timeouts, so a dead master costs a bounded wait.
import { Redis, type RedisOptions } from 'ioredis'
import { redactUrl } from '../redact-url.ts'
import type { Logger } from '../../log.ts'
import type { DependencyStatus } from '../../ports.ts'
import { watchSentinels, type SentinelWatch } from './sentinels.ts'

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
  /** the process's watch of the Sentinels (wiring.ts makes one for all adapters); without it, each connection makes its own */
  sentinelWatch?: SentinelWatch
}

export interface RedisConnection {
  client: Redis
  /** with Sentinels: what they say of the master group */
  watch: SentinelWatch | null
  /** Resolves once the first connection is ready, or after connectTimeoutMs: never waits twice. */
  firstReady: Promise<void>
  describe(): Record<string, unknown>
  close(): void
}

/** Builds the client; `use` names the connection (CLIENT LIST shows mayfly-<use>). */
export function connectRedis(opts: RedisConnectionOptions, use: string): RedisConnection {
  const reconnectDelayMs = opts.reconnectDelayMs ?? 500
  const connectTimeoutMs = opts.connectTimeoutMs ?? 1000
  const common: RedisOptions = {
    connectionName: `mayfly-${use}`,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
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
  const masterName = opts.masterName ?? 'mayfly'
  let client: Redis
  let watch: SentinelWatch | null = null
  let ownWatch = false
  if (sentinels.length > 0) {
    const auth = opts.url ? new URL(opts.url) : null
    client = new Redis({
      ...common,
      sentinels,
      name: masterName,
      username: auth?.username ? decodeURIComponent(auth.username) : undefined,
      password: auth?.password ? decodeURIComponent(auth.password) : undefined,
      sentinelRetryStrategy: () => reconnectDelayMs,
      sentinelCommandTimeout: connectTimeoutMs,
      // Not ioredis' failoverDetector: on +switch-master it disconnects even
      // while the client is reconnecting, which leaves the client ended for
      // good (ioredis 6.0.0, seen in test/contract/cache.test.ts). A dead
      // master drops our socket anyway, and we then ask Sentinel every
      // reconnectDelayMs; a demoted live master answers READONLY (above); a
      // master that stopped answering (frozen, cut off) keeps our socket
      // open, so the watch below moves a ready client to the master the
      // Sentinels name once it is another.
      failoverDetector: false,
    })
    ownWatch = opts.sentinelWatch === undefined
    watch = opts.sentinelWatch ?? watchSentinels({ sentinels, masterName, log: opts.log })
    const moved = client
    watch.onSwitch((master) => {
      if (moved.status === 'ready' && connectedTo(moved) !== master) moved.disconnect(true)
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
    sentinels.length > 0 ? { mode: 'sentinel', master_name: masterName } : { mode: 'standalone', url: redactUrl(opts.url ?? 'redis://127.0.0.1:6379') }
  const close = () => {
    closing = true
    client.disconnect()
    if (ownWatch) watch?.close()
  }
  return { client, watch, firstReady, describe, close }
}

function connectedTo(client: Redis): string | null {
  return client.stream?.remoteAddress ? `${client.stream.remoteAddress}:${client.stream.remotePort}` : null
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

/**
 * /ready and /api/cluster view of one Redis connection: the master and its
 * replicas (state, replication offset behind the master) from the master's
 * INFO replication; with Sentinels, each Sentinel's view, the quorum and the
 * last failover this process saw.
 */
export async function redisStatus(conn: RedisConnection, name: string, kind: string): Promise<DependencyStatus> {
  const { client, watch } = conn
  const sentinelPart = async () => {
    if (watch === null) return {}
    const sentinels = await watch.describe()
    const quorum = sentinels.find((s) => s.quorum !== null)?.quorum ?? null
    const lastFailover = watch.lastFailoverAt()
    return {
      sentinels,
      quorum,
      sentinels_seeing_master: sentinels.filter((s) => s.sees_master).length,
      last_failover_at: lastFailover === null ? null : lastFailover.toISOString(),
    }
  }
  const [sentinel, replication] = await Promise.all([
    sentinelPart(),
    (async () => {
      await conn.firstReady
      return parseInfo(await client.info('replication'))
    })().catch((err: unknown) => (err instanceof Error ? err : new Error(String(err)))),
  ])
  const common = { ...conn.describe(), connection: client.status, ...sentinel }
  if (replication instanceof Error) {
    const master = watch?.master() ?? null
    return { name, kind, ok: false, detail: { ...common, master, error: replication.message } }
  }
  const info = replication
  const here = connectedTo(client)
  const role = info.role === 'slave' ? 'replica' : info.role
  const masterOffset = Number(info.master_repl_offset)
  const replicas = Object.entries(info)
    .filter(([k]) => /^slave\d+$/.test(k))
    .map(([, v]) => {
      const f = Object.fromEntries(v.split(',').map((kv) => kv.split('=') as [string, string]))
      return { address: `${f.ip}:${f.port}`, state: f.state, offset_lag: masterOffset - Number(f.offset), lag_seconds: Number(f.lag) }
    })
  const master = role === 'master' ? here : `${info.master_host}:${info.master_port}`
  return { name, kind, ok: role === 'master', detail: { ...common, role, master, connected_to: here, replicas } }
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':')
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}
