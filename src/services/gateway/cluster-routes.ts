// Health, readiness, the node list, the cluster overview and metrics (the
// storage nodes' own door, heartbeats and lookups: internal-routes.ts). Who may
// see the node list, the overview and the metrics: status-access.ts.
import type { FastifyInstance } from 'fastify'
import type { DependencyStatus } from '../../ports.ts'
import type { GatewayDeps } from './deps.ts'
import { gatewayView, nodeView } from './file-view.ts'
import { hasClusterSecret } from './status-access.ts'
import { orphansJson, type ClusterReads } from './replication-overview.ts'

/** how long one look at the dependencies answers /ready */
const READY_MEMO_MS = 1000

export function registerClusterRoutes(
  app: FastifyInstance,
  deps: GatewayDeps,
  reads: ClusterReads,
  /** the answering gateway's id in the registry */
  gatewayId: string,
): void {
  const { metadata, cache, queue, nodes, settings } = deps

  app.get('/health', async () => ({ status: 'ok' }))

  // One look at every dependency serves all readiness probes of a second:
  // load balancers probe often, and each look queries the database's status.
  let readiness: { at: number; value: Promise<{ ready: boolean; checks: DependencyStatus[] }> } | null = null
  const lookReady = async () => {
    const writable = await nodes.writable().catch(() => [])
    const checks: DependencyStatus[] = [
      await metadata.status().catch((err: Error) => failed('metadata', err)),
      {
        name: 'storage',
        kind: 'storage-nodes',
        ok: writable.length >= settings.writeQuorum,
        detail: { writable: writable.length, write_quorum: settings.writeQuorum },
      },
      await cache.status().catch((err: Error) => failed('cache', err)),
      await queue.status().catch((err: Error) => failed('queue', err)),
    ]
    // cache and queue being down slows things or delays variants; it does not stop uploads
    return { ready: checks[0]!.ok && checks[1]!.ok, checks }
  }

  // public, for probes without credentials; but the details (members, hosts,
  // replicas, brokers) are the cluster's, shown as the status routes are
  app.get('/ready', async (req, reply) => {
    if (readiness === null || Date.now() - readiness.at > READY_MEMO_MS) readiness = { at: Date.now(), value: lookReady() }
    const { ready, checks } = await readiness.value
    const detailed = settings.publicStatus || hasClusterSecret(req, settings.clusterSecret)
    const dependencies = detailed ? checks : checks.map(({ name, kind, ok }) => ({ name, kind, ok }))
    // ready, but slower or late: the cache or the queue is down
    const degraded = checks.filter((c) => !c.ok).map((c) => c.kind)
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', degraded, dependencies })
  })

  app.get('/api/nodes', async () => {
    const [list, usage] = await Promise.all([nodes.all(), reads.nodeUsage()])
    return { nodes: list.map((n) => nodeView(n, usage)) }
  })

  app.get('/api/cluster', async () => {
    const [meta, cacheStatus, queueStatus, depths, nodeList, usage, overview, orphans, gateways] = await Promise.all([
      metadata.status().catch((err: Error) => failed('metadata', err)),
      cache.status().catch((err: Error) => failed('cache', err)),
      queue.status().catch((err: Error) => failed('queue', err)),
      queue.depths([settings.variantTopic]).catch(() => []),
      nodes.all().catch(() => []),
      reads.nodeUsage(),
      reads.replication(),
      reads.orphans(),
      metadata.gateways.list().catch(() => null),
    ])
    const { backlog, manager } = overview
    return {
      metadata: meta,
      cache: cacheStatus,
      queue: { ...queueStatus, queues: depths },
      storage_nodes: nodeList.map((n) => nodeView(n, usage)),
      replication: {
        factor: settings.replicationFactor,
        write_quorum: settings.writeQuorum,
        zones: new Set(nodeList.filter((n) => n.state === 'up').map((n) => n.zone)).size,
        blobs_below_factor: backlog?.blobsBelowFactor ?? null,
        bytes_to_copy: backlog?.bytesToCopy ?? null,
        blobs_above_factor: backlog?.blobsAboveFactor ?? null,
        blobs_below_zone_spread: backlog?.blobsBelowZoneSpread ?? null,
        blobs_without_replica: backlog?.blobsWithoutReplica ?? null,
        // the backlog is the active manager's count, never a scan of ours: null with no manager
        backlog_counted_at: backlog?.countedAt ?? null,
        copy_rate_bytes_per_second: manager?.copyRate ?? 0,
        // copies of blobs the metadata does not know, held for an operator (`mayfly orphans`); null when unreadable
        orphans: orphans === null ? null : orphansJson(orphans),
        manager:
          manager === null
            ? { active: false }
            : {
                active: true,
                holder: manager.holder,
                leader_since: manager.leaderSince,
                copies: manager.copies,
                copied_bytes: manager.copiedBytes,
                failed_copies: manager.failedCopies,
                removals: manager.removals,
                lost_nodes: manager.lostNodes,
                reconciling: manager.reconciling,
                rebalance: manager.rebalance,
              },
      },
      workers: { consumers: depths.reduce((sum, d) => sum + d.consumers, 0) },
      // every gateway heard from within the hour, this one marked `self`; null when the store cannot say
      gateways: gateways?.map((g) => gatewayView(g, settings.gatewayDeadAfterMs, gatewayId)) ?? null,
    }
  })

  app.get('/metrics', async (_req, reply) => {
    return reply.header('content-type', deps.metrics.contentType).send(await deps.metrics.metrics())
  })
}

function failed(name: string, err: Error): DependencyStatus {
  return { name, kind: 'unknown', ok: false, detail: { error: err.message } }
}
