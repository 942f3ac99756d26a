// The production commands: one service per process (DESIGN §2).
import { buildGateway } from '../services/gateway/app.ts'
import { runStorageNode } from '../services/storage-node/run.ts'
import { startReplicationManager, type ReplicationManagerOptions } from '../services/replicator/manager.ts'
import { startWorker } from '../services/worker/worker.ts'
import { createInfrastructure, gatewaySettings, VARIANT_TOPIC, type Infrastructure } from '../wiring.ts'
import type { Config } from '../config.ts'
import type { Logger } from '../log.ts'
import { closeOnSignal, configOrExit, requireSecret, rootLogger } from './lifecycle.ts'

export async function startGateway(config: Config, log: Logger, infra: Infrastructure, secret: string, port: number) {
  const app = buildGateway({
    settings: gatewaySettings(config, secret),
    log,
    metadata: infra.metadata,
    cache: infra.cache,
    rateLimiter: infra.rateLimiter,
    queue: infra.queue,
    blobs: infra.blobs,
    nodes: infra.nodes,
    metrics: infra.metrics,
  })
  await app.listen({ host: config.MAYFLY_HOST, port })
  return app
}

/** requests in flight when the gateway stops get this long to finish before their connections are cut */
const GATEWAY_CLOSE_GRACE_MS = 5_000

/**
 * Stops accepting (new connections are refused, idle ones closed), lets the
 * requests in flight finish, and cuts those still running after
 * GATEWAY_CLOSE_GRACE_MS, so that a stalled client cannot hold the shutdown
 * past its deadline.
 */
export async function stopGateway(app: Awaited<ReturnType<typeof startGateway>>): Promise<void> {
  const cut = setTimeout(() => app.server.closeAllConnections(), GATEWAY_CLOSE_GRACE_MS)
  try {
    await app.close()
  } finally {
    clearTimeout(cut)
  }
}

export function workerOptions(config: Config, log: Logger, infra: Infrastructure) {
  return {
    metadata: infra.metadata,
    blobs: infra.blobs,
    nodes: infra.nodes,
    queue: infra.queue,
    lock: infra.lock,
    log,
    variantTopic: VARIANT_TOPIC,
    concurrency: config.MAYFLY_WORKER_CONCURRENCY,
    maxUploadBytes: config.MAYFLY_MAX_UPLOAD_BYTES,
    deleteGraceMs: config.MAYFLY_DELETE_GRACE_SECONDS * 1000,
    sweepIntervalMs: config.MAYFLY_SWEEP_INTERVAL_SECONDS * 1000,
    gatewayDeadAfterMs: config.MAYFLY_GATEWAY_DEAD_AFTER_SECONDS * 1000,
    namespace: config.MAYFLY_NAMESPACE,
  }
}

export function replicatorOptions(config: Config, log: Logger, infra: Infrastructure): ReplicationManagerOptions {
  return {
    store: infra.metadata.replication,
    nodes: infra.nodes,
    client: infra.client,
    log,
    factor: config.MAYFLY_REPLICATION_FACTOR,
    placement: config.MAYFLY_PLACEMENT,
    concurrency: config.MAYFLY_REPAIR_CONCURRENCY,
    bandwidth: config.MAYFLY_REPAIR_MIB_PER_SECOND * 1024 * 1024,
    // an upload's last copy is recorded within a node timeout or two of its first
    settleMs: 2 * config.MAYFLY_NODE_TIMEOUT_MS,
    orphanGraceMs: config.MAYFLY_ORPHAN_GRACE_SECONDS * 1000,
    orphanHoldAbove: config.MAYFLY_ORPHAN_HOLD_ABOVE,
    auditIntervalMs: config.MAYFLY_AUDIT_INTERVAL_SECONDS * 1000,
    leaseMs: config.MAYFLY_LEADER_LEASE_SECONDS * 1000,
    leaseName: `${config.MAYFLY_NAMESPACE}:replicator`,
  }
}

/**
 * A process on the infrastructure (gateway, worker, replicator): config,
 * secret and adapters, then `start`; on SIGTERM what it started stops first,
 * then the adapters close (last, even when the stop hangs).
 */
async function runOnInfrastructure(
  svc: string,
  start: (config: Config, log: Logger, infra: Infrastructure, secret: string) => Promise<{ stop(): Promise<unknown> }>,
): Promise<void> {
  const config = configOrExit()
  const log = rootLogger(config, svc)
  const secret = requireSecret(config)
  const infra = await createInfrastructure(config, log, secret)
  const service = await start(config, log, infra, secret)
  closeOnSignal(log, { steps: [() => service.stop()], last: () => infra.close() })
}

export const gatewayCommand = () =>
  runOnInfrastructure('gateway', async (config, log, infra, secret) => {
    const app = await startGateway(config, log, infra, secret, config.MAYFLY_PORT ?? 5000)
    return { stop: () => stopGateway(app) }
  })

export const workerCommand = () =>
  runOnInfrastructure('worker', (config, log, infra) => startWorker(workerOptions(config, log, infra)))

export const replicatorCommand = () =>
  runOnInfrastructure('replicator', async (config, log, infra) => startReplicationManager(replicatorOptions(config, log, infra)))

export async function storageNodeCommand(): Promise<void> {
  const config = configOrExit()
  const log = rootLogger(config, 'storage-node')
  requireSecret(config)
  const node = await runStorageNode(config, log)
  closeOnSignal(log, { steps: [() => node.close()] })
  if (process.channel !== undefined) {
    // started by `mayfly up` in a process group of its own: its end is ours
    process.channel.unref()
    process.once('disconnect', () => {
      log.info('the process that started this node is gone; stopping')
      process.kill(process.pid, 'SIGTERM')
    })
  }
}
