// What the parts of the active replication manager share while it leads:
// the fence its changes carry, the bandwidth throttle, the blobs being copied
// right now (so reconciliation leaves them alone), and its counters.
import type { NodeDirectory, NodeView } from '../../ports.ts'
import type { BlobClient } from '../../ports.ts'
import { inDomains, type PlacementStrategy } from '../../core/placement.ts'
import type { ReplicatorCounters } from '../../core/replication.ts'
import type { Logger } from '../../log.ts'
import type { Fence, ReplicationStore } from '../../ports.ts'
import type { Throttle } from './throttle.ts'

export interface ReplicatorSettings {
  factor: number
  placement: PlacementStrategy
  /** a blob younger than this may still get its last upload copy recorded: left alone */
  settleMs: number
  /** a blob nobody knows is deleted from a node once seen unknown for this long */
  orphanGraceMs: number
  /** more copies of unknown blobs due at once on one node than this are held for an operator, not deleted */
  orphanHoldAbove: number
  /** copies in flight at once */
  concurrency: number
}

export interface LeaderContext {
  store: ReplicationStore
  client: BlobClient
  nodes: NodeDirectory
  log: Logger
  settings: ReplicatorSettings
  fence: Fence
  throttle: Throttle
  /** aborted when the reign ends (stopping, stepping down): calls that may take long (copies) take it */
  signal: AbortSignal
  /** keys being copied right now */
  inflight: Set<string>
  counters: ReplicatorCounters
  /** records copied bytes for the copy rate */
  copied(bytes: number): void
  /** false once the lease is lost or the manager stops: start nothing new */
  leading(): boolean
  /** there is repair work now (a node lost, copies found missing): start the repair walk at once */
  repairSoon(): void
}

/** The nodes by id, as planning (core/replication.ts) sees them: zones are failure domains under the strategy. */
export function nodeMap(views: NodeView[], placement: PlacementStrategy): Map<string, NodeView> {
  return new Map(inDomains(views, placement).map((v) => [v.id, v]))
}
