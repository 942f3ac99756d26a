// Storage nodes as the control plane sees them. No I/O here.

export type NodeState = 'up' | 'suspect' | 'down'

/** What a storage node says of itself when it starts and in every heartbeat. */
export interface NodeAnnouncement {
  id: string
  url: string
  zone: string
  version: string
  capacityBytes: number
  freeBytes: number
  usedBytes: number
  blobCount: number
  /** blobs it found damaged and set aside since its data directory was made */
  quarantined: number
}

export interface NodeRecord extends NodeAnnouncement {
  /**
   * when its last heartbeat was recorded, by the metadata store's clock (the
   * one that stamps lostAt too, so the two compare)
   */
  lastHeartbeat: Date
  /**
   * how long before this record was read that was, measured by the metadata
   * store's clock. States are judged on this, so no process's clock (a
   * gateway's that received the heartbeat, or the reader's) decides whether
   * a node is up (issue 7, bug 7).
   */
  heartbeatAgeMs: number
  /** an operator asked to move everything off it */
  draining: boolean
  /**
   * when the replication manager declared it lost (silent past the down
   * period): its replica rows were dropped. Cleared once it came back and was
   * reconciled by inventory.
   */
  lostAt: Date | null
}

export interface NodeTimings {
  /** silent longer than this: suspect */
  suspectAfterMs: number
  /** silent longer than this: down */
  downAfterMs: number
}

/** The state of a node whose last heartbeat is `silentMs` old (by the metadata store's clock, see heartbeatAgeMs). */
export function nodeState(silentMs: number, timings: NodeTimings): NodeState {
  if (silentMs > timings.downAfterMs) return 'down'
  if (silentMs > timings.suspectAfterMs) return 'suspect'
  return 'up'
}
