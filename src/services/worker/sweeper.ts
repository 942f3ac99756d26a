// Physical deletion (DESIGN §5.4): after a file dies and its grace period
// passes, its blob and its variants' blobs leave every node that holds them.
// One sweeper at a time across all processes (a lease); every step is
// idempotent, so a sweeper that loses its lease halfway does no harm.
// A node that is down keeps its replica rows until the replication manager
// declares it lost, so it is swept when it returns; once lost, the sweeper
// drops its rows without its bytes, and the manager's reconciliation deletes
// those dead copies when it comes back.
import type { Logger } from '../../log.ts'
import type { BlobStore, Fence, Lease, Lock, MetadataStore, PurgeItem } from '../../ports.ts'
import type { NodeDirectory } from '../../ports.ts'

/** A blob still pending after this long has lost its writer: its bytes are removed. */
const STALE_UPLOAD_MS = 12 * 3600_000
/**
 * A write's receipt (a counted download's) is kept this long: a claim is
 * refundable, and a lost answer resolvable, for a day. So are the tombstones
 * of a dead gateway's uploads (a gateway frozen longer than that would record
 * its upload over removed bytes) and the rows of silent gateways.
 */
const RECEIPT_KEEP_MS = 24 * 3600_000
const BATCH = 100

export interface SweeperOptions {
  metadata: MetadataStore
  blobs: BlobStore
  nodes: NodeDirectory
  lock: Lock
  log: Logger
  graceMs: number
  intervalMs: number
  /** lock name; the namespace keeps test runs apart */
  lockName: string
  /** a gateway silent this long while another beat is dead: its uploads are abandoned (GatewayRegistry) */
  gatewayDeadAfterMs: number
  now?: () => Date
}

export interface SweepResult {
  purgedFiles: number
  removedReplicas: number
  /** pending blobs removed from every node: uploads of dead gateways, variants of dead workers */
  abandonedUploads: number
  /** receipts of writes older than a day, forgotten */
  forgottenReceipts: number
  /** false when another process holds the sweeper lease */
  ran: boolean
}

export interface Sweeper {
  /** One pass; safe to call while the loop runs (the lease serialises them). */
  sweepOnce(): Promise<SweepResult>
  start(): void
  stop(): Promise<void>
}

export function createSweeper(options: SweeperOptions): Sweeper {
  const { metadata, blobs, nodes, lock, log, graceMs, intervalMs } = options
  const now = options.now ?? (() => new Date())
  const leaseMs = Math.max(30_000, intervalMs * 3)
  let timer: NodeJS.Timeout | null = null
  let running: Promise<unknown> = Promise.resolve()
  let stopped = false

  /** Nodes worth calling now (the others are retried on a later pass), and nodes declared lost. */
  async function reachable(): Promise<{ live: Set<string>; lost: Set<string> }> {
    const all = await nodes.all()
    return {
      live: new Set(all.filter((n) => n.state !== 'down' && !n.failing).map((n) => n.id)),
      lost: new Set(all.filter((n) => n.lostAt !== null && n.state !== 'up').map((n) => n.id)),
    }
  }

  async function purge(item: PurgeItem, { live, lost }: { live: Set<string>; lost: Set<string> }, fence: Fence): Promise<number> {
    let removedCount = 0
    let left = 0
    for (const blob of item.blobs) {
      const targets = blob.nodeIds.filter((id) => live.has(id))
      const removed = await blobs.remove(blob.key, targets, { fence })
      // a lost node's row goes without its bytes: they are deleted as dead when it comes back and is reconciled
      const forgotten = blob.nodeIds.filter((id) => lost.has(id))
      for (const nodeId of [...removed, ...forgotten]) await metadata.removeReplica(blob.key, nodeId)
      removedCount += removed.length + forgotten.length
      left += blob.nodeIds.length - removed.length - forgotten.length
    }
    if (left === 0) await metadata.markPurged(item.fileId, now())
    return removedCount
  }

  async function sweepWith(lease: Lease): Promise<SweepResult> {
    const result: SweepResult = { purgedFiles: 0, removedReplicas: 0, abandonedUploads: 0, forgottenReceipts: 0, ran: true }
    const nodesNow = await reachable()
    // every delete carries the lease's token: a node that saw a later holder refuses a sweeper paused past its lease
    const fence: Fence = { name: options.lockName, token: lease.token }
    const items = await metadata.listPurgeable(new Date(now().getTime() - graceMs), BATCH)
    for (const item of items) {
      if (!(await lease.renew())) return result
      const removed = await purge(item, nodesNow, fence)
      result.removedReplicas += removed
      const after = await metadata.getFile(item.fileId)
      if (after?.purgedAt != null) result.purgedFiles++
    }
    const staleBefore = new Date(now().getTime() - STALE_UPLOAD_MS)
    // a lost node's leftovers are deleted when it comes back and is reconciled
    const everyNode = (await nodes.all()).filter((n) => n.lostAt === null).map((n) => n.id)
    const removeEverywhere = async (key: string) => (await blobs.remove(key, everyNode, { fence })).length === everyNode.length
    for (const key of await metadata.listStalePendingBlobs(staleBefore, BATCH)) {
      if (!(await lease.renew())) return result
      if (await removeEverywhere(key)) {
        await metadata.abandonBlob(key)
        result.abandonedUploads++
      }
    }
    // uploads of dead gateways: tombstones first, so that no file is recorded over the bytes removed next
    await metadata.gateways.abandonOrphanedUploads(options.gatewayDeadAfterMs, staleBefore, BATCH)
    for (const key of await metadata.gateways.listAbandonedUploads(BATCH)) {
      if (!(await lease.renew())) return result
      if (await removeEverywhere(key)) {
        await metadata.gateways.markCleared(key)
        result.abandonedUploads++
      }
    }
    const keepSince = new Date(now().getTime() - RECEIPT_KEEP_MS)
    result.forgottenReceipts = await metadata.forgetReceipts(keepSince, BATCH * 10)
    await metadata.gateways.forget(keepSince, BATCH * 10)
    return result
  }

  async function sweepOnce(): Promise<SweepResult> {
    const lease = await lock.acquire(options.lockName, leaseMs)
    if (lease === null) return { purgedFiles: 0, removedReplicas: 0, abandonedUploads: 0, forgottenReceipts: 0, ran: false }
    try {
      const result = await sweepWith(lease)
      if (result.purgedFiles + result.abandonedUploads > 0) log.info(result, 'swept dead files')
      return result
    } finally {
      await lease.release()
    }
  }

  function schedule(): void {
    if (stopped) return
    timer = setTimeout(() => {
      running = sweepOnce()
        .catch((err: unknown) => log.warn({ err }, 'sweep failed; retrying on the next pass'))
        .finally(schedule)
    }, intervalMs)
    timer.unref()
  }

  return {
    sweepOnce,
    start() {
      stopped = false
      schedule()
    },
    async stop() {
      stopped = true
      if (timer !== null) clearTimeout(timer)
      await running
    },
  }
}
