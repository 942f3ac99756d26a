// A gateway for route-level tests (STYLE.md: `buildGateway(deps).inject()`),
// with no child processes: the embedded adapters (PGlite metadata in a temp
// directory, in-process cache and queue) and real storage nodes served in
// this process on 127.0.0.1, port 0, registered the way their heartbeats
// register them (metadata.recordHeartbeat). So inject() runs the real upload
// and download path, bytes on disk included. The gateway's clock is the
// test's own (`clock`), frozen until moved.
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { createEmbeddedCache } from '../../src/adapters/embedded/cache.ts'
import { createEmbeddedRateLimiter } from '../../src/adapters/embedded/rate-limiter.ts'
import { NO_RATE_LIMITS } from './no-rate-limits.ts'
import { createEmbeddedMetadataStore } from '../../src/adapters/embedded/metadata.ts'
import { createEmbeddedQueue } from '../../src/adapters/embedded/queue.ts'
import { createBlobClient } from '../../src/adapters/storage-node/client.ts'
import { createReplicatedBlobStore } from '../../src/cluster/blob-store.ts'
import { createNodeDirectory } from '../../src/cluster/node-directory.ts'
import { loadConfig } from '../../src/config.ts'
import { createLogger, type Logger } from '../../src/log.ts'
import type { BlobClient, MetadataStore } from '../../src/ports.ts'
import { buildGateway } from '../../src/services/gateway/app.ts'
import type { GatewaySettings } from '../../src/services/gateway/deps.ts'
import { runStorageNode } from '../../src/services/storage-node/index.ts'
import { gatewaySettings } from '../../src/wiring.ts'

/** The gateway's time: frozen at the start until a test moves it. */
export interface TestClock {
  now(): Date
  set(at: Date | number): void
  advance(ms: number): void
}

export interface TestNode {
  id: string
  zone: string
  url: string
  dataDir: string
}

export interface TestGateway {
  /** built, never listening: use inject() */
  app: ReturnType<typeof buildGateway>
  settings: GatewaySettings
  metadata: MetadataStore
  nodes: TestNode[]
  clock: TestClock
  /** the keys of every committed blob on every node's disk (one entry per copy), and any temp files */
  disk(): Promise<{ blobs: string[]; temp: string[] }>
  close(): Promise<void>
}

export interface TestGatewayOptions {
  /** MAYFLY_* settings, as for `mayfly gateway` */
  env?: Record<string, string>
  zones?: string[]
  log?: Logger
  /** wraps the storage node client the blob store uses (to delay or watch its calls) */
  wrapClient?: (client: BlobClient) => BlobClient
}

export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'mayfly-gateway-app-'))
  const secret = randomBytes(24).toString('base64url')
  const config = loadConfig({ MAYFLY_DATA_DIR: join(dir, 'gateway'), MAYFLY_CLUSTER_SECRET: secret, ...NO_RATE_LIMITS, ...options.env })
  const log = options.log ?? createLogger(process.env.MAYFLY_TEST_LOG_LEVEL ?? 'silent')
  let t = Date.now()
  const clock: TestClock = {
    now: () => new Date(t),
    set: (at) => void (t = typeof at === 'number' ? at : at.getTime()),
    advance: (ms) => void (t += ms),
  }
  const closers: (() => Promise<unknown>)[] = [() => rm(dir, { recursive: true, force: true })]
  const close = async () => {
    for (const closeOne of closers.reverse()) await closeOne().catch(() => {})
  }
  try {
    const metadata = await createEmbeddedMetadataStore({ dataDir: config.MAYFLY_DATA_DIR, log })
    closers.push(() => metadata.close())
    const client = createBlobClient({ secret, timeoutMs: config.MAYFLY_NODE_TIMEOUT_MS })
    closers.push(() => client.close())
    const nodes: TestNode[] = []
    for (const [i, zone] of (options.zones ?? ['a', 'b', 'c']).entries()) {
      const dataDir = join(dir, `node-${i + 1}`)
      const nodeConfig = loadConfig({ MAYFLY_DATA_DIR: dataDir, MAYFLY_CLUSTER_SECRET: secret, MAYFLY_ZONE: zone, MAYFLY_HOST: '127.0.0.1', MAYFLY_PORT: '0' })
      const node = await runStorageNode(nodeConfig, log)
      closers.push(() => node.close())
      // what its first heartbeat would record; the directory below never lets it lapse
      await metadata.recordHeartbeat(await client.health(node.url), new Date())
      nodes.push({ id: node.id, zone, url: node.url, dataDir })
    }
    const directory = createNodeDirectory({
      listNodes: () => metadata.listNodes(),
      // no heartbeats follow the first: the nodes stay up for as long as a test runs
      timings: { suspectAfterMs: 24 * 3600_000, downAfterMs: 48 * 3600_000 },
    })
    const blobs = createReplicatedBlobStore({
      client: options.wrapClient?.(client) ?? client,
      nodes: directory,
      replicationFactor: config.MAYFLY_REPLICATION_FACTOR,
      writeQuorum: config.MAYFLY_WRITE_QUORUM,
      placement: config.MAYFLY_PLACEMENT,
      stallTimeoutMs: config.MAYFLY_NODE_TIMEOUT_MS,
      log,
    })
    const queue = createEmbeddedQueue({ maxAttempts: 1, retryDelayMs: 100, log })
    closers.push(() => queue.close())
    const cache = createEmbeddedCache()
    closers.push(() => cache.close())
    const settings = gatewaySettings(config, secret)
    const rateLimiter = createEmbeddedRateLimiter({ now: () => clock.now().getTime() })
    const app = buildGateway({ settings, log, metadata, cache, rateLimiter, queue, blobs, nodes: directory, metrics: new Registry(), now: clock.now })
    closers.push(() => app.close())
    const list = async (path: string) =>
      (await readdir(path, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).map((e) => e.name)
    const disk = async () => {
      const each = await Promise.all(nodes.map(async (n) => ({ blobs: await list(join(n.dataDir, 'blobs')), temp: await list(join(n.dataDir, 'tmp')) })))
      return { blobs: each.flatMap((e) => e.blobs).sort(), temp: each.flatMap((e) => e.temp) }
    }
    return { app, settings, metadata, nodes, clock, disk, close }
  } catch (err) {
    await close()
    throw err
  }
}
