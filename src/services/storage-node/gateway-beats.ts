// The heartbeats of a storage node (DESIGN §1): one to each MAYFLY_CONTROL_URL,
// and one to each gateway those name in their answers. Through a load
// balancer a gateway heard a node only every other beat (two gateways behind
// it), which left it judging the node by the metadata store's record alone:
// while the store was away (a PostgreSQL failover) nodes flapped suspect and
// uploads failed with 503 quorum_unavailable. Beating every gateway up
// directly, each hears every node every interval; a gateway no longer named
// (stopped, or silent) is no longer beaten.
import type { Heartbeat, HeartbeatOptions } from './heartbeat.ts'
import { startHeartbeat } from './heartbeat.ts'

export type GatewayBeatOptions = Omit<HeartbeatOptions, 'controlUrl' | 'onGateways'> & { controlUrls: string[] }

export interface GatewayBeats {
  /** the gateways beaten directly now (not the control urls) */
  direct(): string[]
  stop(): Promise<void>
}

const normalized = (url: string) => url.replace(/\/+$/, '')

export function startGatewayBeats(options: GatewayBeatOptions): GatewayBeats {
  const { controlUrls, ...beat } = options
  const controls = new Set(controlUrls.map(normalized))
  /** what each control url last named */
  const named = new Map<string, string[]>()
  const direct = new Map<string, Heartbeat>()
  let stopped = false

  function update(): void {
    if (stopped) return
    const wanted = new Set([...named.values()].flat().map(normalized).filter((u) => !controls.has(u)))
    for (const [url, heartbeat] of direct) {
      if (wanted.has(url)) continue
      direct.delete(url)
      void heartbeat.stop()
    }
    for (const url of wanted) if (!direct.has(url)) direct.set(url, startHeartbeat({ ...beat, controlUrl: url }))
  }

  const viaControl = [...controls].map((controlUrl) =>
    startHeartbeat({
      ...beat,
      controlUrl,
      onGateways(urls) {
        named.set(controlUrl, urls)
        update()
      },
    }),
  )

  return {
    direct: () => [...direct.keys()].sort(),
    async stop() {
      stopped = true
      await Promise.all([...viaControl, ...direct.values()].map((h) => h.stop()))
      direct.clear()
    },
  }
}
