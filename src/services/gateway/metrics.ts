// Prometheus metrics of the gateway. Gauges of cluster state are computed
// when scraped, so they are never stale.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { GatewayDeps } from './deps.ts'

export interface GatewayMetrics {
  uploads: Counter<'result'>
  uploadBytes: Counter
  downloads: Counter<'result'>
  downloadBytes: Counter
  requestSeconds: Histogram<'method' | 'route' | 'status'>
}

export function createGatewayMetrics(deps: Pick<GatewayDeps, 'metrics' | 'nodes' | 'metadata' | 'settings'>): GatewayMetrics {
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
    name: 'mayfly_blobs_under_replicated',
    help: 'Blobs with fewer replicas than the replication factor',
    registers,
    async collect() {
      const count = await deps.metadata.countUnderReplicated(deps.settings.replicationFactor).catch(() => Number.NaN)
      this.set(count)
    },
  })
  return {
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
