// The replication backlog (blobs below or above the factor, bytes to copy),
// counted by the active manager and published in its status document. The
// gateways serve /api/cluster and /metrics from that one document: before,
// every gateway ran this GROUP BY over every live blob for whoever asked
// (issue 7, bug 4). One manager counting at a bounded pace is the only scan.
import { spreadToAsk, type PublishedBacklog } from '../../core/replication.ts'
import type { Logger } from '../../log.ts'
import type { NodeDirectory, ReplicationStore } from '../../ports.ts'
import type { ReplicatorSettings } from './context.ts'

/** a new count at most this often: /api/cluster is to be true within 3 s of a change (DESIGN §3) */
const EVERY_MS = 1000
/** and at most this share of the time spent counting, so a large store is counted less often */
const DUTY = 0.1

export interface BacklogCount {
  /**
   * The latest count, or null before the first. Starts the next count in the
   * background when one is due, so a slow count never delays the status.
   */
  latest(): PublishedBacklog | null
  /** Resolves once no count is in flight (the end of a reign). */
  settled(): Promise<void>
}

export function createBacklogCount(
  store: Pick<ReplicationStore, 'backlog'>,
  nodes: Pick<NodeDirectory, 'all'>,
  settings: Pick<ReplicatorSettings, 'factor' | 'placement'>,
  log: Logger,
): BacklogCount {
  let last: PublishedBacklog | null = null
  let counting: Promise<void> | null = null
  let dueAt = 0

  async function count(): Promise<void> {
    const started = Date.now()
    try {
      // failing is one process's view; for the cluster, up and not draining is what counts
      const views = (await nodes.all()).map((n) => ({ ...n, failing: false }))
      const counts = await store.backlog(settings.factor, spreadToAsk(views, settings.factor, settings.placement))
      last = { ...counts, countedAt: new Date().toISOString() }
    } catch (err) {
      // the last count stays published with its time; the next try comes when due
      log.warn({ err }, 'counting the replication backlog failed; retrying')
    } finally {
      const took = Date.now() - started
      dueAt = Date.now() + Math.max(EVERY_MS - took, took / DUTY)
      counting = null
    }
  }

  return {
    latest() {
      if (counting === null && Date.now() >= dueAt) counting = count()
      return last
    },
    settled: () => counting ?? Promise.resolve(),
  }
}
