// A whole Mayfly cluster for e2e and fault tests: storage nodes as child
// processes (so they can be killed with signals), the gateway, a worker and
// (when asked) a replication manager in this process on the adapters
// wiring.ts picks, listening on a free port.
// mode 'embedded' uses the stand-ins; mode 'real' uses the machine's
// PostgreSQL (a fresh database), Redis and RabbitMQ (a fresh namespace).
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, type Config } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import { replicatorOptions, startGateway, workerOptions } from '../../src/cli/services.ts'
import { startReplicationManager, type ReplicationManager } from '../../src/services/replicator/manager.ts'
import { startWorker, type Worker } from '../../src/services/worker/worker.ts'
import { createInfrastructure, VARIANT_TOPIC, type Infrastructure } from '../../src/wiring.ts'
import { createTestDatabase } from './databases.ts'
import { deleteTopicQueues } from './rabbit.ts'
import { NO_RATE_LIMITS } from './no-rate-limits.ts'
import { deleteNamespaceKeys } from './redis.ts'
import { startStorageNodeProcess, type StorageNodeProcess } from './storage-node-process.ts'

export { createTestDatabase, POSTGRES_ADMIN_URL } from './databases.ts'

export type Mode = 'embedded' | 'real'

export const REDIS_URL = 'redis://127.0.0.1:6379'
export const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672'

export interface ClusterOptions {
  mode: Mode
  zones?: string[]
  /** more MAYFLY_* settings for the gateway and worker */
  env?: Record<string, string>
  /** start a worker in this process (default true) */
  worker?: boolean
  /** start a replication manager in this process (default false) */
  replicator?: boolean
  /** more MAYFLY_* settings for the storage nodes */
  nodeEnv?: Record<string, string>
  /**
   * data directories of the first nodes, one per zone, which close() leaves
   * alone: a later cluster starts the same nodes on them (the restore drill)
   */
  nodeDirs?: string[]
}

export interface Cluster {
  url: string
  config: Config
  infra: Infrastructure
  nodes: StorageNodeProcess[]
  worker: Worker | null
  /** the in-process replication manager, when asked for */
  replicator: ReplicationManager | null
  secret: string
  /** the MAYFLY_* environment of the gateway, for more processes of this cluster (`mayfly replicator`) */
  env: Record<string, string>
  /** starts one more storage node in the given zone (or restarts one on its data directory) */
  addNode(zone: string, dataDir?: string): Promise<StorageNodeProcess>
  /** waits until `count` nodes are writable as the gateway sees them */
  waitForWritableNodes(count: number): Promise<void>
  close(): Promise<void>
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const dir = await mkdtemp(join(tmpdir(), 'mayfly-cluster-'))
  const secret = randomBytes(24).toString('base64url')
  const cleanups: (() => Promise<unknown>)[] = [() => rm(dir, { recursive: true, force: true })]
  const env: Record<string, string> = {
    ...NO_RATE_LIMITS,
    MAYFLY_DATA_DIR: join(dir, 'gateway'),
    MAYFLY_CLUSTER_SECRET: secret,
    MAYFLY_LOG_LEVEL: process.env.MAYFLY_TEST_LOG_LEVEL ?? 'silent',
    MAYFLY_NAMESPACE: `t-${randomUUID().slice(0, 8)}`,
    MAYFLY_NODE_TIMEOUT_MS: '3000',
    MAYFLY_HEARTBEAT_INTERVAL_MS: '250',
    MAYFLY_JOB_RETRY_DELAY_MS: '100',
    MAYFLY_SWEEP_INTERVAL_SECONDS: '0.5',
  }
  if (options.mode === 'real') {
    const db = await createTestDatabase()
    cleanups.push(() => db.drop())
    Object.assign(env, { MAYFLY_DATABASE_URL: db.url, MAYFLY_REDIS_URL: REDIS_URL, MAYFLY_AMQP_URL: AMQP_URL })
  }
  Object.assign(env, options.env)
  const config = loadConfig(env)
  if (config.MAYFLY_REDIS_URL !== undefined) {
    const url = config.MAYFLY_REDIS_URL
    cleanups.push(() => deleteNamespaceKeys(url, config.MAYFLY_NAMESPACE))
  }
  if (config.MAYFLY_AMQP_URL !== undefined) {
    const policy = { maxAttempts: config.MAYFLY_JOB_MAX_ATTEMPTS, retryDelayMs: config.MAYFLY_JOB_RETRY_DELAY_MS }
    cleanups.push(() => deleteTopicQueues(config.MAYFLY_AMQP_URL![0]!, config.MAYFLY_NAMESPACE, VARIANT_TOPIC, policy))
  }
  const log = createLogger(config.MAYFLY_LOG_LEVEL)
  const infra = await createInfrastructure(config, log, secret)
  // the gateway and the worker start exactly as `mayfly gateway` and `mayfly worker` do
  const app = await startGateway({ ...config, MAYFLY_HOST: '127.0.0.1' }, log, infra, secret, 0)
  const address = app.server.address()
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`

  const nodes: StorageNodeProcess[] = []
  let started = 0
  const addNode = async (zone: string, dataDir?: string) => {
    const node = await startStorageNodeProcess({
      zone,
      secret,
      controlUrl: url,
      dataDir: dataDir ?? join(dir, `node-${++started}`),
      env: { MAYFLY_HEARTBEAT_INTERVAL_MS: '250', ...options.nodeEnv },
    })
    nodes.push(node)
    return node
  }
  const waitForWritableNodes = async (count: number) => {
    const deadline = Date.now() + 15_000
    while ((await infra.nodes.writable()).length < count) {
      if (Date.now() > deadline) throw new Error(`only ${(await infra.nodes.writable()).length} of ${count} nodes became writable`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  const zones = options.zones ?? ['a', 'b', 'c']
  let worker: Worker | null = null
  let replicator: ReplicationManager | null = null
  const close = async () => {
    await replicator?.stop()
    await worker?.stop()
    await app.close()
    await Promise.all(nodes.map((n) => n.stop().catch(() => {})))
    await infra.close()
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
  }
  try {
    await Promise.all(zones.map((z, i) => addNode(z, options.nodeDirs?.[i])))
    await waitForWritableNodes(zones.length)
    worker =
      options.worker === false
        ? null
        : await startWorker(workerOptions(config, log, infra))
    if (options.replicator === true) replicator = startReplicationManager(replicatorOptions(config, log, infra))
  } catch (err) {
    await close()
    throw err
  }

  return {
    url,
    config,
    infra,
    nodes,
    worker,
    replicator,
    secret,
    env,
    addNode,
    waitForWritableNodes,
    close,
  }
}
