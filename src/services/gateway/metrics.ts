// Prometheus metrics of the gateway. Gauges of cluster state are read when
// scraped; the replication ones come from the active manager's published
// status (NaN while no manager runs: unknown, not zero), never from a scan.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { DependencyStatus } from '../../ports.ts'
import type { GatewayDeps } from './deps.ts'
import type { ReplicationOverview } from './replication-overview.ts'

export interface GatewayMetrics {
  uploads: Counter<'result'>
  uploadBytes: Counter
  downloads: Counter<'result'>
  downloadBytes: Counter
  rateLimited: Counter<'action'>
  requestSeconds: Histogram<'method' | 'route' | 'status'>
}

export function createGatewayMetrics(
  deps: Pick<GatewayDeps, 'metrics' | 'nodes' | 'cache' | 'metadata'>,
  replication: () => Promise<ReplicationOverview>,
): GatewayMetrics {
  const registers: Registry[] = [deps.metrics]
  new Gauge({
    name: 'mayfly_storage_nodes',
    help: 'Storage nodes by state',
    labelNames: ['state'],
    registers,
    async collect() {
      const nodes = await deps.nodes.all().catch(() => [])
      for (const state of ['up', 'suspect', 'down']) this.set({ state }, nodes.filter((n) => n.state === state).length)
    },
  })
  new Gauge({
    name: 'mayfly_replication_blobs',
    help: 'Live blobs away from the replication factor (as the active replication manager counted them): below it, above it, in fewer zones than they could be, or with no copy recorded',
    labelNames: ['state'],
    registers,
    async collect() {
      const { backlog } = await replication()
      this.set({ state: 'below_factor' }, backlog?.blobsBelowFactor ?? Number.NaN)
      this.set({ state: 'above_factor' }, backlog?.blobsAboveFactor ?? Number.NaN)
      this.set({ state: 'below_zone_spread' }, backlog?.blobsBelowZoneSpread ?? Number.NaN)
      this.set({ state: 'without_replica' }, backlog?.blobsWithoutReplica ?? Number.NaN)
    },
  })
  new Gauge({
    name: 'mayfly_replication_bytes_to_copy',
    help: 'Bytes the replication manager has to copy to bring every blob to its factor',
    registers,
    async collect() {
      this.set((await replication()).backlog?.bytesToCopy ?? Number.NaN)
    },
  })
  new Gauge({
    name: 'mayfly_replication_copy_bytes_per_second',
    help: 'Repair copy rate of the active replication manager over the last seconds',
    registers,
    async collect() {
      this.set((await replication()).manager?.copyRate ?? 0)
    },
  })
  new Gauge({
    name: 'mayfly_replication_manager_active',
    help: '1 when a replication manager published its status in the last seconds',
    registers,
    async collect() {
      this.set((await replication()).manager === null ? 0 : 1)
    },
  })
  // one look at a tier per scrape serves all its gauges
  const cache = lookOnce(() => deps.cache.status())
  const metadata = lookOnce(() => deps.metadata.status())
  new Gauge({
    name: 'mayfly_metadata_up',
    help: '1 while a PostgreSQL primary (or the embedded store) accepts writes',
    registers,
    async collect() {
      this.set((await metadata()).ok ? 1 : 0)
    },
  })
  new Gauge({
    name: 'mayfly_metadata_timeline',
    help: "The PostgreSQL primary's timeline (one more at every promotion; NaN: unknown or embedded)",
    registers,
    async collect() {
      const timeline = (await metadata()).detail.timeline
      this.set(typeof timeline === 'number' ? timeline : Number.NaN)
    },
  })
  new Gauge({
    name: 'mayfly_metadata_replica_lag_bytes',
    help: 'Bytes of WAL each PostgreSQL replica has not replayed yet',
    labelNames: ['replica', 'state'],
    registers,
    async collect() {
      this.reset()
      const replicas = ((await metadata()).detail.replicas ?? []) as { address: string; state: string; lag_bytes: number | null }[]
      for (const r of replicas) if (r.lag_bytes !== null) this.set({ replica: r.address, state: r.state }, r.lag_bytes)
    },
  })
  new Gauge({
    name: 'mayfly_metadata_read_replica_lag_seconds',
    help: 'How far behind the primary each read replica is (NaN: it did not answer); a skipped one serves no reads',
    labelNames: ['replica', 'skipped'],
    registers,
    async collect() {
      this.reset()
      const replicas = ((await metadata()).detail.read_replicas ?? []) as { url: string; lag_ms: number | null; skipped: boolean }[]
      for (const r of replicas) this.set({ replica: r.url, skipped: String(r.skipped) }, r.lag_ms === null ? Number.NaN : r.lag_ms / 1000)
    },
  })
  new Gauge({
    name: 'mayfly_metadata_last_failover_timestamp_seconds',
    help: 'When this gateway saw the PostgreSQL primary move to another member (NaN: not since it started)',
    registers,
    async collect() {
      const at = (await metadata()).detail.last_failover_at
      this.set(typeof at === 'string' ? Date.parse(at) / 1000 : Number.NaN)
    },
  })
  new Gauge({
    name: 'mayfly_cache_up',
    help: '1 while the cache answers (for Redis: connected to a master)',
    registers,
    async collect() {
      this.set((await cache()).ok ? 1 : 0)
    },
  })
  new Gauge({
    name: 'mayfly_cache_replica_offset_lag_bytes',
    help: 'Bytes of replication stream each Redis replica is behind its master',
    labelNames: ['replica', 'state'],
    registers,
    async collect() {
      this.reset()
      const replicas = ((await cache()).detail.replicas ?? []) as { address: string; state: string; offset_lag: number }[]
      for (const r of replicas) this.set({ replica: r.address, state: r.state }, r.offset_lag)
    },
  })
  new Gauge({
    name: 'mayfly_cache_sentinels_seeing_master',
    help: 'Redis Sentinels that see the master up (NaN without Sentinels)',
    registers,
    async collect() {
      const seeing = (await cache()).detail.sentinels_seeing_master
      this.set(typeof seeing === 'number' ? seeing : Number.NaN)
    },
  })
  new Gauge({
    name: 'mayfly_cache_last_failover_timestamp_seconds',
    help: 'When this gateway saw the Sentinels name another Redis master (NaN: not since it started)',
    registers,
    async collect() {
      const at = (await cache()).detail.last_failover_at
      this.set(typeof at === 'string' ? Date.parse(at) / 1000 : Number.NaN)
    },
  })
  return {
    rateLimited: new Counter({ name: 'mayfly_rate_limited_total', help: 'Requests refused by a per-client rate limit', labelNames: ['action'], registers }),
    uploads: new Counter({ name: 'mayfly_uploads_total', help: 'Uploads by result', labelNames: ['result'], registers }),
    uploadBytes: new Counter({ name: 'mayfly_upload_bytes_total', help: 'Bytes of acknowledged uploads', registers }),
    downloads: new Counter({ name: 'mayfly_downloads_total', help: 'Downloads by result', labelNames: ['result'], registers }),
    downloadBytes: new Counter({ name: 'mayfly_download_bytes_total', help: 'Bytes of file bodies sent', registers }),
    requestSeconds: new Histogram({
      name: 'mayfly_http_request_duration_seconds',
      help: 'Gateway request durations',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
      registers,
    }),
  }
}

/** One look at a tier's status per second, whichever gauge asks first; a failed look counts as down. */
function lookOnce(status: () => Promise<DependencyStatus>): () => Promise<{ ok: boolean; detail: Record<string, unknown> }> {
  let look: { at: number; detail: Promise<{ ok: boolean; detail: Record<string, unknown> }> } | null = null
  return () => {
    if (look === null || Date.now() - look.at > 1000) {
      look = { at: Date.now(), detail: status().then((s) => ({ ok: s.ok, detail: s.detail }), () => ({ ok: false, detail: {} })) }
    }
    return look.detail
  }
}
