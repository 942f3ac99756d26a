// Announce + heartbeat (DESIGN §1): the node POSTs what it is to the control
// plane at start and then every interval. A control plane that is away is
// logged once per outage and never stops the node. A gateway answers with
// the urls of the gateways up (`onGateways`): behind a load balancer the
// node beats each of them directly too (gateway-beats.ts).
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
  /** the gateways a control plane named in its answer (none from an older one, which answers 204) */
  onGateways?: (urls: string[]) => void
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
      if (res.statusCode >= 300) {
        await res.body.dump()
        throw new Error(`control plane answered ${res.statusCode}`)
      }
      const answer: unknown = res.statusCode === 200 ? await res.body.json().catch(() => null) : await res.body.dump()
      options.onGateways?.(gatewaysIn(answer))
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

/** the http(s) urls of an answer's `gateways`; anything else in it is ignored */
function gatewaysIn(answer: unknown): string[] {
  const listed = (answer as { gateways?: unknown } | null)?.gateways
  if (!Array.isArray(listed)) return []
  return listed.filter((u): u is string => typeof u === 'string' && /^https?:\/\/[^/\s]+/.test(u))
}
