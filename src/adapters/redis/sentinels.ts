// What the Sentinels say of the master group: polled every pollMs, so that a
// client stuck on a master that stopped answering (frozen, cut off: its
// socket stays open and no error comes) is moved to the new master as soon
// as one is promoted, and /api/cluster can tell the time of the last
// failover. ioredis' own failoverDetector is off (connection.ts says why).
import { Redis } from 'ioredis'
import type { Logger } from '../../log.ts'

export interface SentinelAddress {
  host: string
  port: number
}

export interface SentinelView {
  address: string
  /** answered SENTINEL MASTER within the timeout */
  reachable: boolean
  /** the master it names, host:port */
  master: string | null
  /** it sees that master up: no s_down, o_down or disconnected flag */
  sees_master: boolean
  quorum: number | null
  other_sentinels: number | null
  error?: string
}

export interface SentinelWatch {
  /** host:port of the master the Sentinels named last (null until one answered) */
  master(): string | null
  /** when this process saw the Sentinels name another master (null: not since it started) */
  lastFailoverAt(): Date | null
  /** asks every Sentinel now */
  describe(): Promise<SentinelView[]>
  /** called with the new master's host:port when the Sentinels name another one */
  onSwitch(listener: (master: string) => void): void
  close(): void
}

export function watchSentinels(opts: {
  sentinels: SentinelAddress[]
  masterName: string
  log: Logger
  pollMs?: number
  timeoutMs?: number
}): SentinelWatch {
  const pollMs = opts.pollMs ?? 500
  const timeoutMs = opts.timeoutMs ?? 500
  const clients = opts.sentinels.map((s) => {
    const c = new Redis({
      host: s.host,
      port: s.port,
      connectionName: 'mayfly-sentinel-watch',
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => pollMs,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      disconnectTimeout: 100,
    })
    c.on('error', () => {})
    return { address: `${s.host}:${s.port}`, client: c }
  })
  const listeners: ((master: string) => void)[] = []
  let master: string | null = null
  let lastFailoverAt: Date | null = null
  let next = 0
  let closed = false

  async function ask<T>(c: Redis, ...args: string[]): Promise<T> {
    if (c.status === 'wait') await c.connect()
    return (await c.call('SENTINEL', ...args)) as T
  }

  /** the master one Sentinel names, trying each in turn from the last that answered */
  async function poll(): Promise<void> {
    for (let i = 0; i < clients.length; i++) {
      const { client } = clients[(next + i) % clients.length]!
      try {
        const addr = await ask<[string, string] | null>(client, 'GET-MASTER-ADDR-BY-NAME', opts.masterName)
        if (addr === null) continue
        next = (next + i) % clients.length
        const named = `${addr[0]}:${addr[1]}`
        if (master !== null && named !== master) {
          lastFailoverAt = new Date()
          opts.log.warn({ from: master, to: named }, 'redis: Sentinels switched master')
          for (const l of listeners) l(named)
        }
        master = named
        return
      } catch {
        // the next Sentinel
      }
    }
  }

  let timer: NodeJS.Timeout | null = null
  const loop = () => {
    if (closed) return
    void poll().finally(() => {
      if (!closed) timer = setTimeout(loop, pollMs).unref()
    })
  }
  loop()

  return {
    master: () => master,
    lastFailoverAt: () => lastFailoverAt,
    async describe() {
      return Promise.all(
        clients.map(async ({ address, client }): Promise<SentinelView> => {
          try {
            const f = pairs(await ask<string[]>(client, 'MASTER', opts.masterName))
            const flags = (f.flags ?? '').split(',')
            return {
              address,
              reachable: true,
              master: `${f.ip}:${f.port}`,
              sees_master: flags.includes('master') && !flags.some((x) => x === 's_down' || x === 'o_down' || x === 'disconnected'),
              quorum: Number(f.quorum),
              other_sentinels: Number(f['num-other-sentinels']),
            }
          } catch (err) {
            const error = err instanceof Error ? err.message : String(err)
            return { address, reachable: false, master: null, sees_master: false, quorum: null, other_sentinels: null, error }
          }
        }),
      )
    },
    onSwitch(listener) {
      listeners.push(listener)
    },
    close() {
      closed = true
      if (timer !== null) clearTimeout(timer)
      for (const { client } of clients) client.disconnect()
    },
  }
}

/** a flat [k1, v1, k2, v2, …] reply as an object */
function pairs(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!
  return out
}
