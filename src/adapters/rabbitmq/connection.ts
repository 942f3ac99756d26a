// One AMQP connection kept open: reconnects with a steady delay (not
// amqplib's exponential backoff, which idles for seconds after the broker is
// back) and rotates through the given urls (brokers of a cluster). A lost
// connection to one broker of several is replaced at once by one to the
// next (the others are most likely up: waiting first only lengthens the
// pause of a failover); the delay comes after a whole round of brokers
// refused, or when a connection did not even last that long.
import { connect, type ChannelModel } from 'amqplib'
import type { Logger } from '../../log.ts'
import { Unavailable } from '../../core/errors.ts'
import { createPauses } from '../../core/pauses.ts'

export interface SupervisedConnection {
  /** The open connection, waiting for one at most `timeoutMs`. Throws Unavailable. */
  get(timeoutMs: number): Promise<ChannelModel>
  /** Closes `conn` if it is still the current one, so that a fresh one is opened. */
  recycle(conn: ChannelModel, reason: string): void
  /** The current connection if open, without waiting. */
  current(): ChannelModel | null
  /** which of the urls the current connection (or the last attempt) went to */
  currentIndex(): number
  /** true after a failed connect or a lost connection, until the next success */
  isDown(): boolean
  close(): Promise<void>
}

export interface ConnectionOptions {
  urls: string[]
  /** connection name shown in the management UI */
  name: string
  reconnectDelayMs: number
  connectTimeoutMs: number
  /** AMQP heartbeat in seconds: how fast a silent broker is noticed */
  heartbeatSeconds: number
  log: Logger
}

export function superviseConnection(opts: ConnectionOptions): SupervisedConnection {
  const log = opts.log.child({ connection: opts.name })
  let conn: ChannelModel | null = null
  let closed = false
  let down = false
  let waiters: ((c: ChannelModel | null) => void)[] = []
  const pauses = createPauses()
  let next = 0
  let recycled = false

  async function loop(): Promise<void> {
    let refused = 0 // brokers that refused since the last connection
    while (!closed) {
      const url = opts.urls[next++ % opts.urls.length]!
      let c: ChannelModel
      try {
        c = await connect(withHeartbeat(url, opts.heartbeatSeconds), {
          timeout: opts.connectTimeoutMs,
          clientProperties: { connection_name: opts.name },
        })
      } catch (err) {
        if (!down) log.warn({ err }, 'rabbitmq unreachable, retrying')
        down = true
        if (++refused % opts.urls.length === 0) await pauses.sleep(opts.reconnectDelayMs)
        continue
      }
      refused = 0
      const connectedAt = Date.now()
      if (closed) {
        await c.close().catch(() => {})
        return
      }
      const lost = new Promise<Error | undefined>((resolve) => {
        c.on('error', () => {}) // 'close' follows with the same error
        c.on('close', (err?: Error) => resolve(err))
      })
      if (down) log.info('rabbitmq connection restored')
      down = false
      conn = c
      const w = waiters
      waiters = []
      for (const fn of w) fn(c)
      const err = await lost
      conn = null
      if (closed) return
      if (recycled) {
        recycled = false // we closed it on purpose: reopen at once
        continue
      }
      log.warn({ err }, 'rabbitmq connection lost, reconnecting')
      down = true
      if (opts.urls.length === 1 || Date.now() - connectedAt < opts.reconnectDelayMs) await pauses.sleep(opts.reconnectDelayMs)
    }
  }
  const running = loop()

  return {
    current: () => conn,
    currentIndex: () => (next - 1 + opts.urls.length) % opts.urls.length,
    isDown: () => down,
    get(timeoutMs) {
      if (closed) return Promise.reject(new Unavailable('job queue closed'))
      if (conn) return Promise.resolve(conn)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== waiter)
          reject(new Unavailable('rabbitmq unreachable'))
        }, timeoutMs)
        const waiter = (c: ChannelModel | null) => {
          clearTimeout(timer)
          if (c) resolve(c)
          else reject(new Unavailable('job queue closed'))
        }
        waiters.push(waiter)
      })
    },
    recycle(c, reason) {
      if (c !== conn) return
      log.warn({ reason }, 'reopening rabbitmq connection')
      conn = null
      recycled = true
      c.close().catch(() => {})
    },
    async close() {
      closed = true
      pauses.wake()
      const w = waiters
      waiters = []
      for (const fn of w) fn(null)
      const c = conn
      conn = null
      if (c) await c.close().catch(() => {})
      await running
    },
  }
}

function withHeartbeat(url: string, seconds: number): string {
  const u = new URL(url)
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(seconds))
  return u.toString()
}

