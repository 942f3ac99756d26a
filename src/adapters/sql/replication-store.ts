// ReplicationStore over a SqlDb (PostgreSQL and PGlite alike): leases timed by
// the database clock, and the replication manager's fenced changes, each one
// statement that checks the lease and changes rows together.
import { LeaseLost } from '../../core/errors.ts'
import type { BlobFate, BlobPlacement, Fence, Lease, ReplicationStore } from '../../ports.ts'
import { createSqlOrphanStore } from './orphan-store.ts'
import * as q from './replication-queries.ts'
import type { SqlDb } from './sql-db.ts'

const idempotent = { idempotent: true }

interface PlacementRow {
  key: string
  size: string | number
  sha256: string
  node_ids: string[] | null
}

function toPlacement(row: PlacementRow): BlobPlacement {
  return { key: row.key, size: Number(row.size), sha256: row.sha256, nodeIds: row.node_ids ?? [] }
}

function requireFence(ok: boolean | undefined, fence: Fence): void {
  if (ok !== true) throw new LeaseLost(`lease ${fence.name} #${fence.token} is no longer held`)
}

/** `reader` serves what only informs (the backlog, each node's usage), never what decides a copy or a delete */
export function createSqlReplicationStore(db: SqlDb, reader: SqlDb = db): ReplicationStore {
  async function acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease | null> {
    // a replay after a lost answer takes a newer token for the same holder (q.ACQUIRE_LEASE)
    const rows = await db.query<{ token: string | number }>(q.ACQUIRE_LEASE, [name, holder, Math.round(ttlMs)], idempotent)
    if (rows[0] === undefined) return null
    const token = Number(rows[0].token)
    let held = true
    return {
      name,
      token,
      async renew() {
        if (!held) return false
        const renewed = await db.query(q.RENEW_LEASE, [name, token, Math.round(ttlMs)], idempotent)
        held = renewed.length > 0
        return held
      },
      async release() {
        if (!held) return
        held = false
        await db.query(q.RELEASE_LEASE, [name, token], idempotent)
      },
    }
  }

  async function describeBlobs(keys: string[]): Promise<Map<string, BlobFate>> {
    const fates = new Map<string, BlobFate>()
    if (keys.length === 0) return fates
    const rows = await db.query<PlacementRow & { state: string | null; created_at: Date; live: boolean; owned: boolean }>(
      q.DESCRIBE_BLOBS, [keys], idempotent,
    )
    for (const row of rows) {
      let fate: BlobFate
      if (row.state === 'pending') fate = { kind: 'pending' }
      // a dead gateway's upload: the sweeper removes it, and so may anyone who finds a copy
      else if (row.state === 'abandoned') fate = { kind: 'dead' }
      else if (row.live) fate = { kind: 'live', blob: toPlacement(row), createdAt: row.created_at }
      else if (row.owned) fate = { kind: 'dead' }
      else fate = { kind: 'unknown' }
      fates.set(row.key, fate)
    }
    return fates
  }

  return {
    acquireLease,

    async listWork(factor, zones, after, limit, minAgeMs) {
      const rows = await db.query<PlacementRow>(q.LIST_WORK, [factor, after, limit, Math.round(minAgeMs), zones], idempotent)
      return rows.map(toPlacement)
    },
    async backlog(factor, zones) {
      const rows = await reader.query<{ below: number; bytes: string | number; above: number; narrow: number; none: number }>(
        q.BACKLOG, [factor, zones], idempotent,
      )
      const row = rows[0]
      return {
        blobsBelowFactor: row?.below ?? 0,
        bytesToCopy: Number(row?.bytes ?? 0),
        blobsAboveFactor: row?.above ?? 0,
        blobsBelowZoneSpread: row?.narrow ?? 0,
        blobsWithoutReplica: row?.none ?? 0,
      }
    },
    async nodeUsage() {
      const rows = await reader.query<{ node_id: string; replicas: number; bytes: string | number }>(q.NODE_USAGE, [], idempotent)
      return rows.map((r) => ({ nodeId: r.node_id, replicas: r.replicas, bytes: Number(r.bytes) }))
    },
    async listNodeBlobs(nodeId, after, limit) {
      const rows = await db.query<PlacementRow & { live: boolean }>(q.LIST_NODE_BLOBS, [nodeId, after, limit], idempotent)
      return rows.map((r) => ({ ...toPlacement(r), live: r.live }))
    },
    describeBlobs,

    async addReplica(blobKey, nodeId, fence) {
      const rows = await db.query<{ fenced_ok: boolean; live: boolean }>(
        q.ADD_REPLICA_FENCED, [blobKey, nodeId, fence.name, fence.token], idempotent,
      )
      requireFence(rows[0]?.fenced_ok, fence)
      return rows[0]?.live === true
    },
    async removeReplica(blobKey, nodeId, fence) {
      const rows = await db.query<{ fenced_ok: boolean }>(q.REMOVE_REPLICA_FENCED, [blobKey, nodeId, fence.name, fence.token], idempotent)
      requireFence(rows[0]?.fenced_ok, fence)
    },
    async declareNodeLost(nodeId, fence) {
      const rows = await db.query<{ fenced_ok: boolean; dropped: number }>(q.DECLARE_NODE_LOST, [nodeId, fence.name, fence.token], idempotent)
      requireFence(rows[0]?.fenced_ok, fence)
      return rows[0]?.dropped ?? 0
    },
    async markNodeReconciled(nodeId, fence) {
      const rows = await db.query<{ fenced_ok: boolean }>(q.MARK_NODE_RECONCILED, [nodeId, fence.name, fence.token], idempotent)
      requireFence(rows[0]?.fenced_ok, fence)
    },

    async setNodeDraining(nodeId, draining) {
      const rows = await db.query(q.SET_NODE_DRAINING, [nodeId, draining], idempotent)
      return rows.length > 0
    },
    async readControl(name) {
      const rows = await db.query<{ value: string; version: string | number; updated_at: Date }>(q.READ_CONTROL, [name], idempotent)
      const row = rows[0]
      return row === undefined ? null : { value: JSON.parse(row.value) as unknown, version: Number(row.version), updatedAt: row.updated_at }
    },
    async writeControl(name, value, fence) {
      if (fence === undefined) return void (await db.query(q.WRITE_CONTROL, [name, JSON.stringify(value)]))
      const rows = await db.query<{ fenced_ok: boolean }>(q.WRITE_CONTROL_FENCED, [name, JSON.stringify(value), fence.name, fence.token])
      requireFence(rows[0]?.fenced_ok, fence)
    },
    async clearControl(name, version) {
      await db.query(q.CLEAR_CONTROL, [name, version], idempotent)
    },
    orphans: createSqlOrphanStore(db),
  }
}
