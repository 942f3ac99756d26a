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
//   unknown                                               -> deleted once seen unknown for orphanGraceMs
import type { NodeView } from '../../ports.ts'
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
}

export interface Reconciler {
  reconcile(node: NodeView): Promise<ReconcileResult>
}

export function createReconciler(ctx: LeaderContext): Reconciler {
  const { store, client, log, settings } = ctx
  /** node:key -> when it was first seen unknown */
  const unknownSince = new Map<string, number>()

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
  async function settleExtra(node: NodeView, held: BlobRecord, result: ReconcileResult): Promise<void> {
    const now = Date.now()
    const fate = (await store.describeBlobs([held.key])).get(held.key) ?? { kind: 'unknown' as const }
    const mark = `${node.id}:${held.key}`
    if (fate.kind !== 'unknown') unknownSince.delete(mark)
    switch (fate.kind) {
      case 'pending':
        return
      case 'dead':
        return deleteCopy(node, held.key, result)
      case 'unknown': {
        const since = unknownSince.get(mark)
        if (since === undefined) unknownSince.set(mark, now)
        else if (now - since >= settings.orphanGraceMs) {
          await deleteCopy(node, held.key, result)
          unknownSince.delete(mark)
        }
        return
      }
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

  async function settleExtras(node: NodeView, extras: BlobRecord[], result: ReconcileResult): Promise<void> {
    for (const held of extras) {
      if (!ctx.leading()) return
      if (ctx.inflight.has(held.key)) continue
      ctx.inflight.add(held.key)
      try {
        await settleExtra(node, held, result)
      } finally {
        ctx.inflight.delete(held.key)
      }
    }
  }

  return {
    async reconcile(node) {
      const result: ReconcileResult = { missing: 0, adopted: 0, deleted: 0 }
      const recorded = await recordedKeys(node.id)
      const held = await inventory(node)
      for (const key of recorded) {
        if (!ctx.leading()) return result
        if (held.has(key) || ctx.inflight.has(key)) continue
        await store.removeReplica(key, node.id, ctx.fence)
        result.missing++
      }
      const extras = [...held.values()].filter((b) => !recorded.has(b.key))
      await settleExtras(node, extras, result)
      if (result.missing + result.adopted + result.deleted > 0) log.info({ node: node.id, ...result }, 'node reconciled by inventory')
      return result
    },
  }
}
