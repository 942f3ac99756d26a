// A gateway's heartbeat in the metadata store (issue 10): about once a
// second under an id new at every start, so that /api/cluster lists the
// gateways and the sweeper can tell which of them died with uploads half
// written (their pending blobs carry this id, see GatewayRegistry). A clean
// stop says goodbye; a kill -9 simply falls silent. A store that is away
// only delays the beats; the log says so once per outage.
//
// After each beat it reads which gateways are up (peers()): the answer to a
// storage node's heartbeat, so that a node announcing through a load
// balancer also beats every gateway directly. Behind a balancer each
// gateway heard each node only every other beat, and while the store was
// away (a failover) nodes flapped suspect and uploads got 503.
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { GATEWAY_BEAT_MS, gatewayState, type GatewayAnnouncement } from '../../core/gateway.ts'
import type { Logger } from '../../log.ts'
import type { GatewayRegistry } from '../../ports.ts'
import { VERSION } from '../../version.ts'

export interface GatewayPresence {
  /** this process's gateway id: the owner of the uploads it writes */
  readonly id: string
  /** Beats now and then every GATEWAY_BEAT_MS; `url()` says where this gateway serves. */
  start(url: () => string): void
  /** Stops beating and says goodbye (its pending uploads become the sweeper's at once). */
  leave(): Promise<void>
  /** the urls of the gateways up (this one included) at the last read; kept while the store is away */
  peers(): string[]
}

/** an address a gateway listens on but nobody can reach it by (it set no MAYFLY_ADVERTISE_URL) */
const UNSPECIFIED_HOST = /^https?:\/\/(0\.0\.0\.0|\[::\])(:|\/|$)/

export function createGatewayPresence(registry: GatewayRegistry, log: Logger): GatewayPresence {
  const id = `gw-${randomBytes(9).toString('base64url')}`
  const startedAt = new Date()
  let timer: NodeJS.Timeout | null = null
  let beating: Promise<void> = Promise.resolve()
  let failing = false
  let left = false
  let peers: string[] = []

  async function beat(url: string): Promise<void> {
    const announcement: GatewayAnnouncement = { id, url, host: hostname(), pid: process.pid, version: VERSION, startedAt }
    try {
      await registry.beat(announcement)
      const up = (await registry.list()).filter((g) => gatewayState(g, Infinity) === 'up' && !UNSPECIFIED_HOST.test(g.url))
      peers = [...new Set(up.map((g) => g.url))].sort()
      if (failing) log.info('gateway heartbeats are recorded again')
      failing = false
    } catch (err) {
      if (!failing) log.warn({ err }, 'gateway heartbeat not recorded, or the gateways up not read; retrying every second')
      failing = true
    }
  }

  return {
    id,
    start(url) {
      if (timer !== null || left) return
      let inFlight = false
      const tick = () => {
        // one beat at a time: a store that is away (a beat waits for its primary) is not flooded
        if (inFlight || left) return
        inFlight = true
        beating = beat(url()).finally(() => (inFlight = false))
      }
      tick()
      timer = setInterval(tick, GATEWAY_BEAT_MS)
      timer.unref()
    },
    peers: () => peers,
    async leave() {
      if (left) return
      left = true
      if (timer !== null) clearInterval(timer)
      await beating
      await registry.leave(id).catch((err: unknown) => log.warn({ err }, 'gateway goodbye not recorded; it counts as dead once silent'))
    },
  }
}
