// Gateways as the cluster sees them (issue 10). Gateways are stateless, but
// the cluster must know which ones are alive: /api/cluster lists them, and
// the uploads a dead one was writing are cleaned up by the sweeper, not by
// the dead process. No I/O here.

/** What a gateway process says of itself in every heartbeat. Its id is new at every start. */
export interface GatewayAnnouncement {
  id: string
  /** where it serves (its own address; the load balancer's is elsewhere) */
  url: string
  host: string
  pid: number
  version: string
  startedAt: Date
}

export type GatewayState = 'up' | 'suspect' | 'down' | 'stopped'

export interface GatewayRecord extends GatewayAnnouncement {
  /** its last heartbeat, by the metadata store's clock */
  lastSeen: Date
  /** how long before this record was read that was, by the same clock */
  heartbeatAgeMs: number
  /** when it said goodbye (a clean stop); null while it runs or after a crash */
  stoppedAt: Date | null
}

/** A gateway beats this often. */
export const GATEWAY_BEAT_MS = 1000
/** Silent longer than this: suspect (three beats missed; /api/cluster is true within 3 s). */
export const GATEWAY_SUSPECT_AFTER_MS = 3000

/**
 * `down` past `deadAfterMs` of silence: the sweeper then takes over its
 * pending uploads, provided another gateway beat meanwhile (see
 * ABANDON_ORPHANED_UPLOADS); a clean stop is `stopped` at once.
 */
export function gatewayState(g: Pick<GatewayRecord, 'heartbeatAgeMs' | 'stoppedAt'>, deadAfterMs: number): GatewayState {
  if (g.stoppedAt !== null) return 'stopped'
  if (g.heartbeatAgeMs > deadAfterMs) return 'down'
  if (g.heartbeatAgeMs > GATEWAY_SUSPECT_AFTER_MS) return 'suspect'
  return 'up'
}
