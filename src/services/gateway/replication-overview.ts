// The replication state for /api/cluster and /metrics: what the active
// replication manager last published (its counters and the backlog it
// counted). A gateway never counts the backlog itself: that is a scan of
// every live blob, and the status routes may be open to anyone (issue 7).
// With no manager running lately there is no backlog to show, and we say so.
import { CONTROL_DOCUMENTS, type OrphanHold, type PublishedBacklog, type ReplicatorStatus } from '../../core/replication.ts'
import type { MetadataStore, NodeUsage, OrphanCount } from '../../ports.ts'

/** a manager that published nothing for this long is not running (it publishes every second) */
const STALE_MS = 10_000
/** one read serves every gauge of a scrape and every dashboard of the moment */
const MEMO_MS = 1000

export interface ReplicationOverview {
  /** the backlog the active manager counted; null when none published lately (or it has not counted yet) */
  backlog: PublishedBacklog | null
  /** the active manager's last status, or null when none published lately */
  manager: ReplicatorStatus | null
}

/** Copies of unknown blobs held for an operator instead of deleted (docs/replication.md), and why. */
export interface OrphanOverview {
  hold: OrphanHold | null
  counts: OrphanCount[]
}

export interface ClusterReads {
  replication(): Promise<ReplicationOverview>
  /** null when the store cannot say */
  orphans(): Promise<OrphanOverview | null>
  /** What the metadata records on each node; empty when the store cannot say. */
  nodeUsage(): Promise<NodeUsage[]>
}

export function createClusterReads(metadata: MetadataStore, now: () => Date = () => new Date()): ClusterReads {
  return {
    replication: remembered(async () => {
      const doc = await metadata.replication.readControl(CONTROL_DOCUMENTS.status).catch(() => null)
      const fresh = doc !== null && now().getTime() - doc.updatedAt.getTime() < STALE_MS
      const manager = fresh ? (doc.value as ReplicatorStatus) : null
      // a document from a manager of an older version has no backlog
      return { backlog: manager?.backlog ?? null, manager }
    }),
    orphans: remembered(() => readOrphans(metadata).catch(() => null)),
    // a GROUP BY over the replicas too: at most once a second per gateway, however many ask
    nodeUsage: remembered(() => metadata.replication.nodeUsage().catch(() => [])),
  }
}

export async function readOrphans(metadata: MetadataStore): Promise<OrphanOverview> {
  const [doc, counts] = await Promise.all([
    metadata.replication.readControl(CONTROL_DOCUMENTS.orphanHold),
    metadata.replication.orphans.counts(),
  ])
  return { hold: doc === null ? null : (doc.value as OrphanHold), counts }
}

/** The overview as /api/cluster shows it (`replication.orphans`), totals first. */
export function orphansJson(o: OrphanOverview): Record<string, unknown> {
  const total = (state: string, what: 'copies' | 'bytes') =>
    o.counts.filter((c) => c.state === state).reduce((sum, c) => sum + c[what], 0)
  const nodes = [...new Set(o.counts.map((c) => c.nodeId))].map((id) => {
    const of = (state: string) => o.counts.find((c) => c.nodeId === id && c.state === state)?.copies ?? 0
    return { node_id: id, held: of('held'), kept: of('kept'), released: of('released'), bytes: o.counts.filter((c) => c.nodeId === id).reduce((s, c) => s + c.bytes, 0) }
  })
  return {
    hold: o.hold,
    held: total('held', 'copies'),
    held_bytes: total('held', 'bytes'),
    kept: total('kept', 'copies'),
    kept_bytes: total('kept', 'bytes'),
    released: total('released', 'copies'),
    nodes,
  }
}

/** `look`, asked at most once per MEMO_MS; callers within that time share its answer. */
function remembered<T>(look: () => Promise<T>): () => Promise<T> {
  let memo: { at: number; value: Promise<T> } | null = null
  return () => {
    if (memo === null || Date.now() - memo.at > MEMO_MS) memo = { at: Date.now(), value: look() }
    return memo.value
  }
}
