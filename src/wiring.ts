// config -> adapters: the only file that picks embedded or real ones.
// Absent infrastructure urls mean the embedded stand-in, said in the log.
import { Registry, collectDefaultMetrics } from 'prom-client'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import type { BlobClient, BlobStore, Cache, JobQueue, Lock, MetadataStore, NodeDirectory, RateLimiter } from './ports.ts'
import { createEmbeddedCache } from './adapters/embedded/cache.ts'
import { createEmbeddedLock } from './adapters/embedded/lock.ts'
import { createEmbeddedMetadataStore } from './adapters/embedded/metadata.ts'
import { createEmbeddedQueue } from './adapters/embedded/queue.ts'
import { createEmbeddedRateLimiter } from './adapters/embedded/rate-limiter.ts'
import { createPostgresMetadataStore } from './adapters/postgres/metadata.ts'
import { createRabbitQueue } from './adapters/rabbitmq/queue.ts'
import { createRedisCache } from './adapters/redis/cache.ts'
import { createRedisLock } from './adapters/redis/lock.ts'
import { createRedisRateLimiter } from './adapters/redis/rate-limiter.ts'
import type { RedisConnectionOptions } from './adapters/redis/connection.ts'
import { watchSentinels } from './adapters/redis/sentinels.ts'
import { createReplicatedBlobStore } from './cluster/blob-store.ts'
import { createNodeDirectory } from './cluster/node-directory.ts'
import { createBlobClient } from './adapters/storage-node/client.ts'
import type { GatewaySettings } from './services/gateway/deps.ts'

/** Everything a gateway, worker or replicator talks to. close() closes it all, newest first. */
export interface Infrastructure {
  metadata: MetadataStore
  cache: Cache
  lock: Lock
  rateLimiter: RateLimiter
  queue: JobQueue
  client: BlobClient
  nodes: NodeDirectory
  blobs: BlobStore
  metrics: Registry
  close(): Promise<void>
}

export const VARIANT_TOPIC = 'variants'

export async function createInfrastructure(config: Config, log: Logger, clusterSecret: string): Promise<Infrastructure> {
  const closers: (() => Promise<void>)[] = []
  const adopt = <T extends { close(): Promise<void> }>(x: T): T => {
    closers.push(() => x.close())
    return x
  }
  try {
    const metadata = adopt(await createMetadata(config, log))
    const found = redisOptions(config, log)
    // one watch of the Sentinels for the cache's and the lock's connections
    const sentinels = found?.sentinels ?? []
    const watch = found === null || sentinels.length === 0 ? undefined : watchSentinels({ sentinels, masterName: found.masterName ?? 'mayfly', log: found.log })
    if (watch !== undefined) closers.push(async () => watch.close())
    const redis = found === null ? null : { ...found, sentinelWatch: watch }
    if (redis === null) log.info('no MAYFLY_REDIS_URL or MAYFLY_REDIS_SENTINELS: using the embedded cache and lock')
    const cache = adopt(redis === null ? createEmbeddedCache() : createRedisCache(redis))
    const lock = adopt(redis === null ? createEmbeddedLock() : createRedisLock(redis))
    const rateLimiter = adopt(redis === null ? createEmbeddedRateLimiter() : createRedisRateLimiter(redis))
    const queueOptions = { maxAttempts: config.MAYFLY_JOB_MAX_ATTEMPTS, retryDelayMs: config.MAYFLY_JOB_RETRY_DELAY_MS, log: log.child({ svc: 'queue' }) }
    if (config.MAYFLY_AMQP_URL === undefined) log.info('no MAYFLY_AMQP_URL: using the embedded job queue')
    const queue = adopt(
      config.MAYFLY_AMQP_URL === undefined
        ? createEmbeddedQueue(queueOptions)
        : await createRabbitQueue({ ...queueOptions, url: config.MAYFLY_AMQP_URL, namespace: config.MAYFLY_NAMESPACE }),
    )
    const client = adopt(createBlobClient({ secret: clusterSecret, timeoutMs: config.MAYFLY_NODE_TIMEOUT_MS }))
    const nodes = createNodeDirectory({
      listNodes: () => metadata.listNodes(),
      timings: {
        suspectAfterMs: config.MAYFLY_NODE_SUSPECT_AFTER_SECONDS * 1000,
        downAfterMs: config.MAYFLY_NODE_DOWN_AFTER_SECONDS * 1000,
      },
    })
    const blobs = createReplicatedBlobStore({
      client,
      nodes,
      replicationFactor: config.MAYFLY_REPLICATION_FACTOR,
      writeQuorum: config.MAYFLY_WRITE_QUORUM,
      placement: config.MAYFLY_PLACEMENT,
      stallTimeoutMs: config.MAYFLY_NODE_TIMEOUT_MS,
      log: log.child({ svc: 'blobs' }),
    })
    const metrics = new Registry()
    collectDefaultMetrics({ register: metrics })
    return {
      metadata, cache, lock, rateLimiter, queue, client, nodes, blobs, metrics,
      async close() {
        for (const close of closers.reverse()) await close().catch((err: unknown) => log.warn({ err }, 'close failed'))
      },
    }
  } catch (err) {
    for (const close of closers.reverse()) await close().catch((e: unknown) => log.warn({ err: e }, 'close after a failed start failed'))
    throw err
  }
}

async function createMetadata(config: Config, log: Logger): Promise<MetadataStore> {
  const mlog = log.child({ svc: 'metadata' })
  if (config.MAYFLY_DATABASE_URL === undefined) {
    log.info({ dataDir: config.MAYFLY_DATA_DIR }, 'no MAYFLY_DATABASE_URL: using embedded PGlite metadata')
    return createEmbeddedMetadataStore({ dataDir: config.MAYFLY_DATA_DIR, log: mlog })
  }
  return createPostgresMetadataStore({
    url: config.MAYFLY_DATABASE_URL,
    readUrls: config.MAYFLY_DATABASE_READ_URLS,
    maxReplicaLagMs: config.MAYFLY_DATABASE_MAX_REPLICA_LAG_MS,
    poolSize: config.MAYFLY_DATABASE_POOL_SIZE,
    statementTimeoutMs: config.MAYFLY_DATABASE_STATEMENT_TIMEOUT_MS,
    log: mlog,
  })
}

function redisOptions(config: Config, log: Logger): RedisConnectionOptions | null {
  const base = { namespace: config.MAYFLY_NAMESPACE, log: log.child({ svc: 'redis' }) }
  if (config.MAYFLY_REDIS_SENTINELS.length > 0) {
    const sentinels = config.MAYFLY_REDIS_SENTINELS.map((hp) => {
      const [host, port] = hp.split(':')
      return { host: host ?? '127.0.0.1', port: Number(port ?? 26379) }
    })
    return { ...base, url: config.MAYFLY_REDIS_URL, sentinels, masterName: config.MAYFLY_REDIS_MASTER_NAME }
  }
  if (config.MAYFLY_REDIS_URL !== undefined) return { ...base, url: config.MAYFLY_REDIS_URL }
  return null
}

export function gatewaySettings(config: Config, clusterSecret: string): GatewaySettings {
  return {
    clusterSecret,
    publicUrl: config.MAYFLY_PUBLIC_URL,
    advertiseUrl: config.MAYFLY_ADVERTISE_URL,
    gatewayDeadAfterMs: config.MAYFLY_GATEWAY_DEAD_AFTER_SECONDS * 1000,
    replicationFactor: config.MAYFLY_REPLICATION_FACTOR,
    writeQuorum: config.MAYFLY_WRITE_QUORUM,
    placement: config.MAYFLY_PLACEMENT,
    defaultExpiresInSeconds: config.MAYFLY_DEFAULT_EXPIRES_IN,
    maxExpiresInSeconds: config.MAYFLY_MAX_EXPIRES_IN,
    maxUploadBytes: config.MAYFLY_MAX_UPLOAD_BYTES,
    cacheTtlMs: config.MAYFLY_CACHE_TTL_SECONDS * 1000,
    clientTimeoutMs: config.MAYFLY_CLIENT_TIMEOUT_MS,
    variantTopic: VARIANT_TOPIC,
    // `mayfly gateway`'s default; `mayfly up` (a local try-out) opens it unless told otherwise
    publicStatus: config.MAYFLY_PUBLIC_STATUS ?? false,
    trustedProxies: config.MAYFLY_TRUSTED_PROXIES,
    rateLimits: {
      upload: config.MAYFLY_RATE_LIMIT_UPLOADS,
      download: config.MAYFLY_RATE_LIMIT_DOWNLOADS,
      password: config.MAYFLY_RATE_LIMIT_PASSWORD_ATTEMPTS,
    },
  }
}
