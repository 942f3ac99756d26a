// What the gateway is built from. wiring.ts makes these; tests pass embedded ones.
import type { Registry } from 'prom-client'
import type { PlacementStrategy } from '../../core/placement.ts'
import type { Logger } from '../../log.ts'
import type { BlobStore, Cache, JobQueue, MetadataStore, RateLimit, RateLimiter } from '../../ports.ts'
import type { NodeDirectory } from '../../ports.ts'

export interface GatewaySettings {
  clusterSecret: string
  publicUrl: string | undefined
  /** where this gateway process is reached, as its heartbeats tell (default: the address it listens on) */
  advertiseUrl?: string
  /** a gateway silent this long is `down` in /api/cluster (and its pending uploads the sweeper's) */
  gatewayDeadAfterMs: number
  replicationFactor: number
  writeQuorum: number
  placement: PlacementStrategy
  defaultExpiresInSeconds: number
  maxExpiresInSeconds: number
  maxUploadBytes: number
  cacheTtlMs: number
  clientTimeoutMs: number
  /** the topic variant jobs are published to */
  variantTopic: string
  /** anyone may see /admin, /api/cluster, /api/nodes and /metrics; otherwise only the cluster secret (status-access.ts) */
  publicStatus: boolean
  /** addresses whose X-Forwarded-* headers are believed; none: the socket's own address and Host header count */
  trustedProxies: string[]
  /** per client address; a count of 0 turns one off (rate-limits.ts) */
  rateLimits: { upload: RateLimit; download: RateLimit; password: RateLimit }
}

export interface GatewayDeps {
  settings: GatewaySettings
  log: Logger
  metadata: MetadataStore
  cache: Cache
  rateLimiter: RateLimiter
  queue: JobQueue
  blobs: BlobStore
  nodes: NodeDirectory
  metrics: Registry
  now?: () => Date
}
