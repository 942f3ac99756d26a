// The replication state for /api/cluster and /metrics: what the active
// replication manager last published (its counters and the backlog it
// counted). A gateway never counts the backlog itself: that is a scan of
// every live blob, and the status routes may be open to anyone (issue 7).
// With no manager running lately there is no backlog to show, and we say so.
import { CONTROL_DOCUMENTS, type PublishedBacklog, type ReplicatorStatus } from '../../core/replication.ts'
import type { MetadataStore, NodeUsage } from '../../ports.ts'

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

export interface ClusterReads {
  replication(): Promise<ReplicationOverview>
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
    // a GROUP BY over the replicas too: at most once a second per gateway, however many ask
    nodeUsage: remembered(() => metadata.replication.nodeUsage().catch(() => [])),
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
