// A worker process's work: variant jobs from the queue, the sweeper, and a
// periodic scan that republishes variant jobs still pending long after their
// upload (a publish that failed, or a job lost with the embedded queue when
// its process died). Handlers are idempotent, so a duplicate job is harmless.
import type { Logger } from '../../log.ts'
import type { BlobStore, Consumer, JobQueue, Lock, MetadataStore } from '../../ports.ts'
import type { NodeDirectory } from '../../ports.ts'
import { createSweeper, type Sweeper } from './sweeper.ts'
import { createVariantJobHandler } from './variant-job.ts'

export interface WorkerOptions {
  metadata: MetadataStore
  blobs: BlobStore
  nodes: NodeDirectory
  queue: JobQueue
  lock: Lock
  log: Logger
  variantTopic: string
  concurrency: number
  maxUploadBytes: number
  deleteGraceMs: number
  sweepIntervalMs: number
  /** see SweeperOptions */
  gatewayDeadAfterMs: number
  namespace: string
  /** a variant pending longer than this gets its job published again */
  pendingRepublishMs?: number
}

export interface Worker {
  sweeper: Sweeper
  stop(): Promise<void>
}

export async function startWorker(options: WorkerOptions): Promise<Worker> {
  const { metadata, queue, log } = options
  const handler = createVariantJobHandler({
    metadata,
    blobs: options.blobs,
    log: log.child({ job: 'variants' }),
    maxUploadBytes: options.maxUploadBytes,
  })
  const consumer: Consumer = await queue.consume(options.variantTopic, handler, { concurrency: options.concurrency })
  const sweeper = createSweeper({
    metadata,
    blobs: options.blobs,
    nodes: options.nodes,
    lock: options.lock,
    log: log.child({ svc: 'sweeper' }),
    graceMs: options.deleteGraceMs,
    intervalMs: options.sweepIntervalMs,
    gatewayDeadAfterMs: options.gatewayDeadAfterMs,
    lockName: `${options.namespace}:sweeper`,
  })
  sweeper.start()

  const republishMs = options.pendingRepublishMs ?? 120_000
  const rescan = setInterval(() => {
    void republishPending().catch((err: unknown) => log.warn({ err }, 'pending-variant scan failed'))
  }, Math.max(1000, republishMs / 2))
  rescan.unref()

  async function republishPending(): Promise<void> {
    const lease = await options.lock.acquire(`${options.namespace}:variant-rescan`, 60_000)
    if (lease === null) return
    try {
      const fileIds = await metadata.listStalePendingVariants(new Date(Date.now() - republishMs), 500)
      for (const fileId of fileIds) await queue.publish(options.variantTopic, { fileId })
      if (fileIds.length > 0) log.info({ count: fileIds.length }, 'republished variant jobs still pending')
    } finally {
      await lease.release()
    }
  }

  log.info({ topic: options.variantTopic, concurrency: options.concurrency }, 'worker started')
  return {
    sweeper,
    async stop() {
      clearInterval(rescan)
      await sweeper.stop()
      await consumer.stop()
    },
  }
}
