// MetadataStore over a SqlDb: the one implementation behind both the
// PostgreSQL and the PGlite adapter. The adapters provide connections,
// status() and close(); the semantics live here and in queries.ts.
//
// Purge protocol (the sweeper's side, see listPurgeable / markPurged):
//   1. listPurgeable(now - grace) -> files with every blob and its replicas
//   2. blobs.remove(key, nodeIds), then removeReplica(key, node) per node it left
//   3. markPurged(fileId) -> purged only once no blob of the file has a replica
//      left; otherwise nothing changes and the file comes back in step 1 (a node
//      that was down, a variant that became ready in between).
import { randomUUID } from 'node:crypto'
import { Conflict, NotFound, Unavailable } from '../../core/errors.ts'
import { fileStatus, type FileRecord, type VariantRecord } from '../../core/file.ts'
import type { NodeAnnouncement, NodeRecord } from '../../core/node.ts'
import type { ClaimResult, DependencyStatus, MetadataStore, NewFile, PurgeItem } from '../../ports.ts'
import * as q from './queries.ts'
import { toFile, toNode, toVariant, type FileRow, type NodeRow, type VariantRow } from './rows.ts'
import { createSqlGatewayRegistry } from './gateway-store.ts'
import { createSqlReplicationStore } from './replication-store.ts'
import type { SqlDb } from './sql-db.ts'

export interface SqlMetadataStoreOptions {
  /** where stale-tolerant reads go (read replicas): the node list and the dashboard's counts; default: `db` */
  reader?: SqlDb
  status(): Promise<DependencyStatus>
  close(): Promise<void>
}

const idempotent = { idempotent: true }

/** Claims whose UPDATE missed but whose re-read looks alive (a refund in between) are retried this often. */
const CLAIM_ATTEMPTS = 3

export function createSqlMetadataStore(db: SqlDb, options: SqlMetadataStoreOptions): MetadataStore {
  const reader = options.reader ?? db

  // Always on the primary, never `reader`: the record decides whether a link
  // is alive (the gateway serves and caches what this returns), and a replica
  // lagging behind a DELETE or the claim that used a link up would bring the
  // dead link back (issue 7). Its other callers, the sweeper and the variant
  // worker, must not act on a stale record either.
  async function getFile(id: string): Promise<FileRecord | null> {
    const rows = await db.query<FileRow>(q.GET_FILE, [id], idempotent)
    return rows[0] === undefined ? null : toFile(rows[0])
  }

  // Idempotent by its receipt (q.CLAIM_DOWNLOAD): the executor may replay it
  // after a lost answer, and the outcome is then read back, never counted twice.
  async function claimDownload(id: string, now: Date): Promise<ClaimResult> {
    const claim = randomUUID()
    for (let attempt = 1; ; attempt++) {
      let claimed: FileRow[]
      try {
        claimed = await db.query<FileRow>(q.CLAIM_DOWNLOAD, [id, now, claim], idempotent)
      } catch (err) {
        // a replay met the receipt of its first run, which committed meanwhile
        if (!(err instanceof Conflict)) throw err
        claimed = []
      }
      if (claimed[0] !== undefined) return { ok: true, file: toFile(claimed[0]), claim }
      const rows = await db.query<FileRow & { claimed: boolean }>(q.CLAIM_OUTCOME, [id, claim], idempotent)
      if (rows[0] === undefined) return { ok: false, reason: 'not_found' }
      const file = toFile(rows[0])
      if (rows[0].claimed) return { ok: true, file, claim }
      const status = fileStatus(file, now)
      if (status !== 'active') return { ok: false, reason: status, file }
      // purged rows are dead by construction; only a concurrent refund gets here
      if (attempt >= CLAIM_ATTEMPTS) return { ok: false, reason: 'download_limit_reached', file }
    }
  }

  // Idempotent too: a replay after a lost answer meets the file's own row
  // (files' key) and returns it; a different file under the id is a Conflict.
  async function createFile(file: NewFile): Promise<FileRecord> {
    const { blob, variants } = file
    try {
      const rows = await db.query<FileRow>(q.CREATE_FILE, [
        file.id, blob.key, file.name, file.mime, blob.size, blob.sha256, file.createdAt, file.expiresAt,
        file.maxDownloads, file.passwordHash, file.deleteTokenHash, file.replicas,
        variants.map((v) => v.name), variants.map((v) => v.state), variants.map((v) => v.reason),
      ], idempotent)
      // the blob is a tombstone (q.CREATE_FILE): the sweeper took this upload for its dead gateway's
      if (rows[0] === undefined) throw new Unavailable(`upload ${blob.key} was abandoned: this gateway was out of touch too long; send it again`)
      return toFile(rows[0])
    } catch (err) {
      if (!(err instanceof Conflict)) throw err
      const existing = await getFile(file.id)
      if (existing?.blobKey !== blob.key || existing.deleteTokenHash !== file.deleteTokenHash) throw err
      return existing
    }
  }

  async function setVariant(variant: VariantRecord, replicas: string[]): Promise<void> {
    if (variant.state === 'ready' && variant.blob === null) throw new Error('a ready variant needs its blob')
    await db.transaction(async (tx) => {
      // locks the file row: markPurged cannot run between this and the blob rows
      const live = await tx.query(q.LOCK_LIVE_FILE, [variant.fileId])
      if (live.length === 0) throw new NotFound(`file ${variant.fileId} is unknown or purged`)
      const { blob } = variant
      if (blob !== null) {
        await tx.query(q.ACTIVATE_BLOB, [blob.key, blob.size, blob.sha256, new Date()])
        if (replicas.length > 0) await tx.query(q.ADD_REPLICAS, [blob.key, replicas])
      }
      await tx.query(q.UPSERT_VARIANT, [
        variant.fileId, variant.name, variant.state, blob?.key ?? null, blob?.size ?? null, blob?.sha256 ?? null,
        variant.mime, variant.reason,
      ])
    }, idempotent)
  }

  async function listPurgeable(diedBefore: Date, limit: number): Promise<PurgeItem[]> {
    const dead = await db.query<{ id: string }>(q.LIST_DEAD_FILES, [diedBefore, limit], idempotent)
    if (dead.length === 0) return []
    const ids = dead.map((r) => r.id)
    const rows = await db.query<{ file_id: string; key: string; node_ids: string[] }>(q.LIST_PURGE_BLOBS, [ids], idempotent)
    const items = new Map<string, PurgeItem>(ids.map((id) => [id, { fileId: id, blobs: [] }]))
    for (const row of rows) items.get(row.file_id)?.blobs.push({ key: row.key, nodeIds: row.node_ids })
    return [...items.values()]
  }

  async function markPurged(fileId: string, now: Date): Promise<void> {
    await db.transaction(async (tx) => {
      const live = await tx.query(q.LOCK_LIVE_FILE, [fileId])
      if (live.length === 0) return
      await tx.query(q.MARK_PURGED, [fileId, now])
    }, idempotent)
  }

  return {
    async beginBlob(key, now, owner = null) {
      await db.query(q.BEGIN_BLOB, [key, now, owner], idempotent)
    },
    async abandonBlob(key) {
      await db.query(q.ABANDON_BLOB, [key], idempotent)
    },
    async listStalePendingBlobs(before, limit) {
      const rows = await db.query<{ key: string }>(q.LIST_STALE_PENDING_BLOBS, [before, limit], idempotent)
      return rows.map((r) => r.key)
    },

    createFile,
    getFile,
    claimDownload,
    async addDownloads(counts, receipt) {
      if (counts.size === 0) return
      await db.query(q.ADD_DOWNLOADS, [[...counts.keys()], [...counts.values()], receipt], idempotent)
    },
    async refundDownload(id, claim) {
      await db.query(q.REFUND_DOWNLOAD, [id, claim], idempotent)
    },
    async forgetReceipts(before, limit) {
      const rows = await db.query(q.FORGET_RECEIPTS, [before, limit], idempotent)
      return rows.length
    },
    async deleteFile(id, now) {
      const rows = await db.query(q.DELETE_FILE, [id, now], idempotent)
      return rows.length > 0
    },

    setVariant,
    async listVariants(fileId) {
      const rows = await db.query<VariantRow>(q.LIST_VARIANTS, [fileId], idempotent)
      return rows.map(toVariant)
    },
    async listStalePendingVariants(before, limit) {
      const rows = await db.query<{ file_id: string }>(q.LIST_STALE_PENDING_VARIANTS, [before, limit], idempotent)
      return rows.map((r) => r.file_id)
    },

    async listReplicas(blobKey) {
      const rows = await db.query<{ node_id: string }>(q.LIST_REPLICAS, [blobKey], idempotent)
      return rows.map((r) => r.node_id)
    },
    async addReplica(blobKey, nodeId) {
      const rows = await db.query<{ blob_exists: boolean }>(q.ADD_REPLICA, [blobKey, nodeId], idempotent)
      if (rows[0]?.blob_exists !== true) throw new NotFound(`blob ${blobKey} is unknown (purged or abandoned)`)
    },
    async removeReplica(blobKey, nodeId) {
      await db.query(q.REMOVE_REPLICA, [blobKey, nodeId], idempotent)
    },

    listPurgeable,
    markPurged,

    // stamped by the database's clock, whatever the caller's says (issue 7, bug 7)
    async recordHeartbeat(node: NodeAnnouncement) {
      await db.query(q.UPSERT_NODE, [
        node.id, node.url, node.zone, node.version, node.capacityBytes, node.freeBytes, node.usedBytes,
        node.blobCount, node.quarantined,
      ], idempotent)
    },
    async listNodes(): Promise<NodeRecord[]> {
      const rows = await reader.query<NodeRow>(q.LIST_NODES, [], idempotent)
      return rows.map(toNode)
    },

    replication: createSqlReplicationStore(db, reader),
    gateways: createSqlGatewayRegistry(db, reader),

    status: () => options.status(),
    close: () => options.close(),
  }
}
