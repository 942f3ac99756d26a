// The replication state for /api/cluster and /metrics: the backlog, counted
// from the metadata on every look (so it is true even with no manager
// running), and what the active replication manager last published.
import type { NodeDirectory } from '../../ports.ts'
import type { PlacementStrategy } from '../../core/placement.ts'
import { CONTROL_DOCUMENTS, spreadToAsk, type ReplicatorStatus } from '../../core/replication.ts'
import type { MetadataStore, ReplicationBacklog } from '../../ports.ts'

/** a manager that published nothing for this long is not running (it publishes every second) */
const STALE_MS = 10_000
/** one count serves every gauge of a scrape */
const MEMO_MS = 1000

export interface ReplicationOverview {
  backlog: ReplicationBacklog | null
  /** the active manager's last status, or null when none published lately */
  manager: ReplicatorStatus | null
}

export function createReplicationOverview(
  metadata: MetadataStore,
  nodes: NodeDirectory,
  factor: number,
  placement: PlacementStrategy,
): () => Promise<ReplicationOverview> {
  let memo: { at: number; value: Promise<ReplicationOverview> } | null = null

  async function look(): Promise<ReplicationOverview> {
    // failing is one process's view; for the cluster, up and not draining is what counts
    const zones = spreadToAsk((await nodes.all().catch(() => [])).map((n) => ({ ...n, failing: false })), factor, placement)
    const [backlog, doc] = await Promise.all([
      metadata.replication.backlog(factor, zones).catch(() => null),
      metadata.replication.readControl(CONTROL_DOCUMENTS.status).catch(() => null),
    ])
    const fresh = doc !== null && Date.now() - doc.updatedAt.getTime() < STALE_MS
    return { backlog, manager: fresh ? (doc.value as ReplicatorStatus) : null }
  }

  return () => {
    if (memo === null || Date.now() - memo.at > MEMO_MS) memo = { at: Date.now(), value: look() }
    return memo.value
  }
}
