// Reconciles one node by inventory (anti-entropy): what the metadata records
// on the node against what the node holds. Run when a node comes back (after
// being silent or lost), when it quarantined a blob, and now and then for
// every node.
//
// Order matters: the rows are read before the inventory, so a key recorded
// but missing from the inventory was really lost (an upload records its row
// only after the node fsynced it). Keys held but not recorded are looked up
// afresh, one at a time, each marked busy while it is decided:
//   live, `factor` healthy copies elsewhere               -> an extra copy: deleted
//   live, fewer healthy copies, same bytes                -> recorded here (no copy needed)
//   live, fewer healthy copies, other bytes               -> deleted
//   dead (its link died or was purged)                    -> deleted
//   pending (an upload in progress)                       -> left alone
//   unknown                                               -> deleted once seen unknown for orphanGraceMs,
//                                                            unless held (below)
//
// Unknown blobs are what a metadata store restored to an earlier time does
// not know: every blob uploaded after its restore point. Their deletion must
// never be the manager's own idea on that scale, so it holds them for an
// operator (the orphans table, `mayfly orphans`) instead:
//   - while the control document `orphan-hold` exists (a restore writes it;
//     so does an operator, `mayfly orphans hold`): every unknown copy found;
//   - when more than orphanHoldAbove copies on one node are due at once: it
//     writes that document (reason many) and holds them all.
// A held copy stays until an operator keeps it (never deleted) or releases
// it (deleted on the node's next reconciliation, which comes within seconds).
// A copy whose blob became known again, or that left the node, is forgotten.
import { CONTROL_DOCUMENTS, type OrphanHold } from '../../core/replication.ts'
import type { NodeView, OrphanCopy } from '../../ports.ts'
import type { BlobRecord } from '../../core/file.ts'
import type { LeaderContext } from './context.ts'

const PAGE = 1000

export interface ReconcileResult {
  /** rows of blobs the node no longer holds (now below their factor, so repaired) */
  missing: number
  /** copies the node had that were recorded as replicas again */
  adopted: number
  /** copies deleted from the node: dead, extra or orphaned */
  deleted: number
  /** copies of unknown blobs newly held for an operator */
  held: number
}

export interface Reconciler {
  reconcile(node: NodeView): Promise<ReconcileResult>
}

export function createReconciler(ctx: LeaderContext): Reconciler {
  const { store, client, log, settings } = ctx
  /** node:key -> when it was first seen unknown */
  const unknownSince = new Map<string, number>()
  /** the hold (by its `since`) under which this reign said in the log that it holds copies: said once */
  let holdLogged: string | null = null

  async function recordedKeys(nodeId: string): Promise<Set<string>> {
    const keys = new Set<string>()
    for (let after = ''; ; ) {
      const page = await store.listNodeBlobs(nodeId, after, PAGE)
      for (const b of page) keys.add(b.key)
      if (page.length < PAGE) return keys
      after = page.at(-1)!.key
    }
  }

  async function inventory(node: NodeView): Promise<Map<string, BlobRecord>> {
    const held = new Map<string, BlobRecord>()
    for (let after: string | null = ''; after !== null; ) {
      const page = await client.list(node.url, { after, limit: PAGE })
      for (const b of page.blobs) held.set(b.key, b)
      after = page.next
    }
    return held
  }

  async function deleteCopy(node: NodeView, key: string, result: ReconcileResult): Promise<void> {
    await client.delete(node.url, key, { fence: ctx.fence })
    result.deleted++
  }

  /**
   * What to do with a copy the node holds but the metadata does not record,
   * decided on a fresh look at that one blob while it is marked busy (so no
   * copy of it is made meanwhile by repair, drain or rebalance).
   */
  async function settleExtra(node: NodeView, held: BlobRecord, result: ReconcileResult, unknown: BlobRecord[]): Promise<void> {
    const now = Date.now()
    const fate = (await store.describeBlobs([held.key])).get(held.key) ?? { kind: 'unknown' as const }
    if (fate.kind !== 'unknown') unknownSince.delete(`${node.id}:${held.key}`)
    switch (fate.kind) {
      case 'pending':
        return
      case 'dead':
        return deleteCopy(node, held.key, result)
      case 'unknown':
        // decided together (settleUnknown): how many there are is part of the decision
        unknown.push(held)
        return
      case 'live': {
        const { blob } = fate
        if (blob.nodeIds.includes(node.id)) return // recorded meanwhile
        if (fate.createdAt.getTime() > now - settings.settleMs) return // its upload may record it yet
        const nodes = new Map((await ctx.nodes.all()).map((n) => [n.id, n]))
        // as planBlob counts for removals: only copies that are healthy now and stay
        const healthy = blob.nodeIds.filter((id) => {
          const n = nodes.get(id)
          return n !== undefined && n.state === 'up' && !n.failing && !n.draining
        }).length
        const sameBytes = held.sha256 === blob.sha256 && held.size === blob.size
        if (healthy >= settings.factor) return deleteCopy(node, held.key, result)
        // below the factor in healthy copies: a good copy here is worth keeping
        if (sameBytes && !node.draining && (await store.addReplica(blob.key, node.id, ctx.fence))) result.adopted++
        else if (!sameBytes) await deleteCopy(node, held.key, result)
        return
      }
    }
  }

  /** The extras settled; the unknown ones among them, or null when the reign ended midway. */
  async function settleExtras(node: NodeView, extras: BlobRecord[], result: ReconcileResult): Promise<BlobRecord[] | null> {
    const unknown: BlobRecord[] = []
    for (const held of extras) {
      if (!ctx.leading()) return null
      if (ctx.inflight.has(held.key)) continue
      ctx.inflight.add(held.key)
      try {
        await settleExtra(node, held, result, unknown)
      } finally {
        ctx.inflight.delete(held.key)
      }
    }
    return unknown
  }

  /** Deletes a copy if its blob is still unknown, on a fresh look while it is marked busy; true when it did. */
  async function deleteUnknown(node: NodeView, key: string, result: ReconcileResult): Promise<boolean> {
    if (!ctx.leading() || ctx.inflight.has(key)) return false
    ctx.inflight.add(key)
    try {
      const fate = (await store.describeBlobs([key])).get(key)
      if (fate !== undefined && fate.kind !== 'unknown') return false
      await deleteCopy(node, key, result)
      return true
    } finally {
      ctx.inflight.delete(key)
    }
  }

  async function readHold(): Promise<OrphanHold | null> {
    const doc = await store.readControl(CONTROL_DOCUMENTS.orphanHold)
    return doc === null ? null : (doc.value as OrphanHold)
  }

  /** The node's copies of unknown blobs: released ones deleted, held and kept ones left, new ones deleted after the grace or held. */
  async function settleUnknown(node: NodeView, unknown: BlobRecord[], orphans: Map<string, OrphanCopy>, result: ReconcileResult): Promise<void> {
    const now = Date.now()
    const unknownKeys = new Set(unknown.map((b) => b.key))
    const forget = [...orphans.keys()].filter((key) => !unknownKeys.has(key)) // known again, or gone from the node
    const fresh: BlobRecord[] = []
    for (const b of unknown) {
      const copy = orphans.get(b.key)
      if (copy === undefined) fresh.push(b)
      else if (copy.state === 'released' && (await deleteUnknown(node, b.key, result))) forget.push(b.key)
    }
    await store.orphans.forget(node.id, forget, ctx.fence)
    if (fresh.length === 0 || !ctx.leading()) return
    const due = fresh.filter((b) => {
      const mark = `${node.id}:${b.key}`
      const since = unknownSince.get(mark)
      if (since === undefined) unknownSince.set(mark, now)
      return since !== undefined && now - since >= settings.orphanGraceMs
    })
    let hold = await readHold()
    if (hold === null && due.length <= settings.orphanHoldAbove) {
      for (const b of due) if (await deleteUnknown(node, b.key, result)) unknownSince.delete(`${node.id}:${b.key}`)
      return
    }
    if (hold === null) {
      hold = {
        reason: 'many',
        since: new Date(now).toISOString(),
        detail: `${due.length} copies of blobs the metadata does not know were due for deletion at once on node ${node.id}, more than ${settings.orphanHoldAbove} (MAYFLY_ORPHAN_HOLD_ABOVE)`,
      }
      await store.writeControl(CONTROL_DOCUMENTS.orphanHold, hold, ctx.fence)
    }
    // under a hold every unknown copy is held at once: a restore's are all there from the start
    await store.orphans.hold(node.id, fresh.map((b) => ({ key: b.key, size: b.size })), ctx.fence)
    for (const b of fresh) unknownSince.delete(`${node.id}:${b.key}`)
    result.held += fresh.length
    if (holdLogged !== hold.since) {
      holdLogged = hold.since
      log.warn(
        { node: node.id, held: fresh.length, reason: hold.reason, detail: hold.detail },
        'copies of blobs the metadata does not know are held, not deleted: `mayfly orphans list` shows them, `mayfly orphans delete` or `keep` decides',
      )
    }
  }

  return {
    async reconcile(node) {
      const result: ReconcileResult = { missing: 0, adopted: 0, deleted: 0, held: 0 }
      const recorded = await recordedKeys(node.id)
      const orphans = await store.orphans.onNode(node.id)
      const held = await inventory(node)
      for (const key of recorded) {
        if (!ctx.leading()) return result
        if (held.has(key) || ctx.inflight.has(key)) continue
        await store.removeReplica(key, node.id, ctx.fence)
        result.missing++
      }
      const extras = [...held.values()].filter((b) => !recorded.has(b.key))
      const unknown = await settleExtras(node, extras, result)
      if (unknown !== null) await settleUnknown(node, unknown, orphans, result)
      if (result.missing + result.adopted + result.deleted + result.held > 0) log.info({ node: node.id, ...result }, 'node reconciled by inventory')
      return result
    },
  }
}
