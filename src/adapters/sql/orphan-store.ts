// OrphanStore over a SqlDb (PostgreSQL and PGlite alike): the copies of
// unknown blobs the replication manager holds for an operator.
import { LeaseLost } from '../../core/errors.ts'
import type { Fence, OrphanCopy, OrphanState, OrphanStore } from '../../ports.ts'
import * as q from './orphan-queries.ts'
import type { SqlDb } from './sql-db.ts'

const idempotent = { idempotent: true }

interface OrphanRow {
  node_id?: string
  blob_key: string
  size: string | number
  state: string
  held_at: Date
}

const toCopy = (nodeId: string, r: OrphanRow): OrphanCopy => ({
  nodeId,
  key: r.blob_key,
  size: Number(r.size),
  state: r.state as OrphanState,
  heldAt: r.held_at,
})

function requireFence(rows: { fenced_ok: boolean }[], fence: Fence): void {
  if (rows[0]?.fenced_ok !== true) throw new LeaseLost(`lease ${fence.name} #${fence.token} is no longer held`)
}

/** `reader` serves the counts (they only inform), never what decides a delete */
export function createSqlOrphanStore(db: SqlDb, reader: SqlDb = db): OrphanStore {
  return {
    async onNode(nodeId) {
      const rows = await db.query<OrphanRow>(q.ORPHANS_ON_NODE, [nodeId], idempotent)
      return new Map(rows.map((r) => [r.blob_key, toCopy(nodeId, r)]))
    },
    async hold(nodeId, copies, fence) {
      if (copies.length === 0) return
      const rows = await db.query<{ fenced_ok: boolean }>(
        q.HOLD_ORPHANS, [nodeId, copies.map((c) => c.key), copies.map((c) => c.size), fence.name, fence.token], idempotent,
      )
      requireFence(rows, fence)
    },
    async forget(nodeId, keys, fence) {
      if (keys.length === 0) return
      const rows = await db.query<{ fenced_ok: boolean }>(q.FORGET_ORPHANS, [nodeId, [...keys], fence.name, fence.token], idempotent)
      requireFence(rows, fence)
    },
    async counts() {
      const rows = await reader.query<{ node_id: string; state: string; copies: number; bytes: string | number }>(q.COUNT_ORPHANS, [], idempotent)
      return rows.map((r) => ({ nodeId: r.node_id, state: r.state as OrphanState, copies: r.copies, bytes: Number(r.bytes) }))
    },
    async list(after, limit) {
      const rows = await db.query<OrphanRow & { node_id: string }>(
        q.LIST_ORPHANS, [after?.nodeId ?? '', after?.key ?? '', limit], idempotent,
      )
      return rows.map((r) => toCopy(r.node_id, r))
    },
    async decide(from, to, keys) {
      const rows = await db.query<{ count: number }>(q.DECIDE_ORPHANS, [[...from], to, keys === null ? null : [...keys]], idempotent)
      return rows[0]?.count ?? 0
    },
  }
}
