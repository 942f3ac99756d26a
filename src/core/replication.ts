// What the replication manager does to one blob, decided from where its
// copies are and the state of the nodes. No I/O here; the manager
// (services/replicator) carries the plans out.
//
// Rules:
// - A copy counts toward the factor while its node is not draining, whatever
//   its state: a silent node keeps its rows until it is declared lost (then
//   they are dropped), so a short outage causes no copying.
// - Copies go to healthy nodes that do not hold the blob, zones not yet used
//   by the counted copies first (placeReplicas).
// - A blob at its factor but in fewer zones than the healthy nodes offer
//   (copies made while a zone was away) gets one more copy in a missing zone;
//   the removal rule then drops a copy from a zone that has two.
// - A copy is removed only while `factor` healthy, non-draining copies stay,
//   chosen to span as many zones as possible: removals never go below the
//   factor, not even for a moment.
import type { ReplicationBacklog } from '../ports.ts'
import type { NodeState } from './node.ts'
import { placeReplicas, type PlacementStrategy } from './placement.ts'

export interface ReplicaNode {
  id: string
  zone: string
  state: NodeState
  draining: boolean
  /** a call to it failed here a moment ago */
  failing: boolean
  freeBytes: number
}

export interface BlobPlan {
  /** nodes to copy the blob to */
  copyTo: ReplicaNode[]
  /** healthy holders a copy may come from */
  sources: ReplicaNode[]
  /** holders whose copy goes (their rows, and their bytes when reachable) */
  remove: string[]
}

const healthy = (n: ReplicaNode) => n.state === 'up' && !n.failing

/**
 * The plan for a blob recorded on `holderIds`. `nodes` are all known nodes;
 * an id missing from it is a holder nobody can reach (counted, never a source).
 */
export function planBlob(
  holderIds: readonly string[],
  nodes: ReadonlyMap<string, ReplicaNode>,
  factor: number,
  random: () => number = Math.random,
  /** the blob's size: a node with less free space is no target */
  size = 0,
): BlobPlan {
  const holders = holderIds.map((id) => nodes.get(id))
  const known = holders.filter((n): n is ReplicaNode => n !== undefined)
  const counted = holderIds.length - known.filter((n) => n.draining).length
  const sources = known.filter(healthy)

  const held = new Set(holderIds)
  const candidates = [...nodes.values()].filter((n) => healthy(n) && !n.draining && !held.has(n.id) && n.freeBytes >= size)
  const usedZones = new Set(known.filter((n) => !n.draining).map((n) => n.zone))

  if (counted < factor) {
    if (sources.length === 0) return { copyTo: [], sources, remove: [] }
    return { copyTo: placeReplicas(candidates, factor - counted, random, usedZones), sources, remove: [] }
  }

  const extra = holderIds.length > factor || known.some((n) => n.draining)
  if (!extra) {
    const widen = candidates.filter((n) => !usedZones.has(n.zone))
    // a holder nobody knows counts as a zone of its own, as in zoneSpread
    const spread = usedZones.size + (holderIds.length - known.length)
    if (spread >= reachableSpread(nodes.values(), factor) || widen.length === 0 || sources.length === 0) {
      return { copyTo: [], sources, remove: [] }
    }
    return { copyTo: placeReplicas(widen, 1, random), sources, remove: [] }
  }
  const keep = keepSet(known.filter((n) => healthy(n) && !n.draining), factor)
  if (keep.length < factor) return { copyTo: [], sources, remove: [] }
  const kept = new Set(keep.map((n) => n.id))
  return { copyTo: [], sources, remove: holderIds.filter((id) => !kept.has(id)) }
}

/** `count` of the candidates spanning as many zones as possible, the emptier node first within a zone. */
function keepSet(candidates: readonly ReplicaNode[], count: number): ReplicaNode[] {
  const ordered = [...candidates].sort((a, b) => b.freeBytes - a.freeBytes || (a.id < b.id ? -1 : 1))
  const chosen: ReplicaNode[] = []
  const zones = new Set<string>()
  for (const n of ordered) {
    if (chosen.length < count && !zones.has(n.zone)) {
      chosen.push(n)
      zones.add(n.zone)
    }
  }
  for (const n of ordered) if (chosen.length < count && !chosen.includes(n)) chosen.push(n)
  return chosen
}

/** How many zones a blob's copies can span now: the zones of healthy nodes that are not draining, at most `factor`. */
export function reachableSpread(nodes: Iterable<ReplicaNode>, factor: number): number {
  const zones = new Set<string>()
  for (const n of nodes) if (healthy(n) && !n.draining) zones.add(n.zone)
  return Math.min(factor, zones.size)
}

/**
 * The zone spread to ask of every blob (the metadata counts real zones):
 * reachableSpread under the zones strategy; none under nodes, where distinct
 * nodes are all that is kept apart and every copy is on a distinct node anyway.
 */
export function spreadToAsk(nodes: Iterable<ReplicaNode>, factor: number, strategy: PlacementStrategy): number {
  return strategy === 'zones' ? reachableSpread(nodes, factor) : 0
}

/** Distinct zones of a set of holders (nodes unknown here count as one zone each). */
export function zoneSpread(holderIds: readonly string[], nodes: ReadonlyMap<string, { zone: string }>): number {
  return new Set(holderIds.map((id) => nodes.get(id)?.zone ?? `?${id}`)).size
}

/**
 * Whether moving a copy from `from` to `to` keeps the blob at least as spread
 * across zones as it is (rebalance and drain never trade zone spread for balance).
 */
export function moveKeepsSpread(
  holderIds: readonly string[],
  from: string,
  to: string,
  nodes: ReadonlyMap<string, { zone: string }>,
): boolean {
  if (holderIds.includes(to)) return false
  const after = holderIds.filter((id) => id !== from).concat(to)
  return zoneSpread(after, nodes) >= zoneSpread(holderIds, nodes)
}

/** Names of the control documents (ReplicationStore.readControl) the manager and the gateways share. */
export const CONTROL_DOCUMENTS = {
  /** the active manager's ReplicatorStatus, rewritten every second */
  status: 'replicator',
  /** an operator's rebalance request; the manager clears it when the nodes are even */
  rebalance: 'rebalance',
  /**
   * OrphanHold: while it exists no copy of an unknown blob is deleted; each
   * one found is held for an operator. scripts/pg-backup.sh restore writes it
   * into a restored database by this name; `mayfly orphans delete|keep` clears it.
   */
  orphanHold: 'orphan-hold',
} as const

/** Why copies of unknown blobs are held rather than deleted (control document `orphan-hold`). */
export interface OrphanHold {
  /** restored: the metadata came back from a backup; many: more were due at once than the manager deletes on its own; operator: asked for */
  reason: 'restored' | 'many' | 'operator'
  since: string
  detail: string
}

/** What the active replication manager has done since it took the lease. */
export interface ReplicatorCounters {
  copies: number
  copiedBytes: number
  failedCopies: number
  removals: number
  lostNodes: number
  reconciledNodes: number
  /** rebalance moves */
  moves: number
}

/** What the active replication manager publishes (control document `replicator`) for /api/cluster and /metrics. */
export interface ReplicatorStatus extends ReplicatorCounters {
  holder: string
  /** fencing token of its lease */
  token: number
  leaderSince: string
  updatedAt: string
  /** bytes per second copied over the last few seconds */
  copyRate: number
  /** nodes waiting for or in reconciliation */
  reconciling: string[]
  rebalance: { requested: boolean; moves: number }
  /**
   * The backlog as this manager last counted it, so that gateways serve it
   * from this document instead of each scanning every live blob per request
   * (issue 7); null until its first count.
   */
  backlog: PublishedBacklog | null
}

export interface PublishedBacklog extends ReplicationBacklog {
  /** when the count was taken */
  countedAt: string
}
