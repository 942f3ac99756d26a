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
  lastHeartbeat: Date
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

export function nodeState(node: Pick<NodeRecord, 'lastHeartbeat'>, now: Date, timings: NodeTimings): NodeState {
  const silentMs = now.getTime() - node.lastHeartbeat.getTime()
  if (silentMs > timings.downAfterMs) return 'down'
  if (silentMs > timings.suspectAfterMs) return 'suspect'
  return 'up'
}
