// Announce + heartbeat (DESIGN §1): the node POSTs what it is to the control
// plane at start and then every interval. A control plane that is away is
// logged once per outage and never stops the node.
import { request, type Dispatcher } from 'undici'
import type { NodeAnnouncement } from '../../core/node.ts'
import type { Logger } from '../../log.ts'

export interface HeartbeatOptions {
  controlUrl: string
  secret: string
  intervalMs: number
  timeoutMs: number
  dispatcher: Dispatcher
  describe: () => Promise<NodeAnnouncement>
  log: Logger
}

export interface Heartbeat {
  /** Stops sending; resolves once no beat is in flight. */
  stop(): Promise<void>
}

export function startHeartbeat(options: HeartbeatOptions): Heartbeat {
  const url = `${options.controlUrl.replace(/\/+$/, '')}/internal/nodes/heartbeat`
  const log = options.log
  let failing = false
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let inflight: Promise<void> = Promise.resolve()

  async function beat(): Promise<void> {
    try {
      const announcement = await options.describe()
      const res = await request(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${options.secret}`, 'content-type': 'application/json' },
        body: JSON.stringify(announcement),
        dispatcher: options.dispatcher,
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
      })
      await res.body.dump()
      if (res.statusCode >= 300) throw new Error(`control plane answered ${res.statusCode}`)
      if (failing) log.info({ controlUrl: options.controlUrl }, 'heartbeats reach the control plane again')
      else if (!stopped && timer === undefined) log.info({ controlUrl: options.controlUrl }, 'announced to the control plane')
      failing = false
    } catch (err) {
      if (!failing) log.warn({ err, controlUrl: options.controlUrl }, 'heartbeat failed; retrying quietly until it succeeds')
      failing = true
    }
  }

  function loop(): void {
    if (stopped) return
    inflight = beat().finally(() => {
      if (!stopped) timer = setTimeout(loop, options.intervalMs)
    })
  }
  loop()

  return {
    async stop() {
      stopped = true
      clearTimeout(timer)
      await inflight
    },
  }
}
