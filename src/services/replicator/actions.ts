// The two things the manager does to blobs on nodes, shared by repair,
// drain and rebalance: copy a blob node to node and record it, and remove a
// copy (its row first, then its bytes). Nothing here ever takes a blob below
// what its row count says: a copy is recorded only once stored and checked,
// and bytes go only after their row. Every call to a node carries the
// lease's fence, so a node refuses a superseded leader (LeaseLost).
import { Conflict, LeaseLost, NotFound, PeerFailed } from '../../core/errors.ts'
import type { BlobPlacement } from '../../ports.ts'
import type { NodeView } from '../../ports.ts'
import type { LeaderContext } from './context.ts'

/** Copies `blob` to `target` from one of `sources` (throttled) and records it; false when nothing was recorded. */
export async function copyBlob(ctx: LeaderContext, blob: BlobPlacement, target: NodeView, sources: NodeView[]): Promise<boolean> {
  const { client, store, log } = ctx
  const source = sources[Math.floor(Math.random() * sources.length)]
  // busy: being copied elsewhere, or reconciliation is deciding about a copy of it
  if (source === undefined || ctx.inflight.has(blob.key)) return false
  ctx.inflight.add(blob.key)
  try {
    await ctx.throttle.take(blob.size)
    if (!ctx.leading()) return false
    const stored = await client.copy(target.url, blob.key, source.id, { fence: ctx.fence, signal: ctx.signal })
    if (stored.sha256 !== blob.sha256 || stored.size !== blob.size) {
      log.error({ key: blob.key, node: target.id, source: source.id }, 'a copy does not match the recorded checksum; removing it')
      await client.delete(target.url, blob.key, { fence: ctx.fence })
      ctx.counters.failedCopies++
      return false
    }
    if (!(await store.addReplica(blob.key, target.id, ctx.fence))) {
      // the file died while we copied: the copy is garbage
      await client.delete(target.url, blob.key, { fence: ctx.fence })
      return false
    }
    ctx.counters.copies++
    ctx.copied(blob.size)
    return true
  } catch (err) {
    if (err instanceof LeaseLost) throw err
    // the reign ended (stopping, stepping down): the target dropped the copy; nobody failed
    if (ctx.signal.aborted) return false
    ctx.counters.failedCopies++
    if (err instanceof NotFound) {
      log.warn({ key: blob.key, source: source.id }, 'the source of a copy does not have the blob; reconciliation will see to it')
    } else if (err instanceof PeerFailed) {
      // the target is fine: the next copies (and, in one process with a gateway, uploads) avoid the source for a while
      ctx.nodes.reportFailure(source.id)
      log.warn({ err, key: blob.key, node: target.id, source: source.id }, 'the source of a copy failed; retrying on a later pass')
    } else if (err instanceof Conflict && err.code === 'unknown_source') {
      // the target's control plane does not see the source as a live node (yet, or any more): neither is at fault
      log.warn({ err, key: blob.key, node: target.id, source: source.id }, 'the target of a copy does not know its source as a live node; retrying on a later pass')
    } else {
      // the next copies pick another target for a while (a node that is full, slow or gone)
      ctx.nodes.reportFailure(target.id)
      log.warn({ err, key: blob.key, node: target.id, source: source.id }, 'copy failed; retrying on a later pass')
    }
    return false
  } finally {
    ctx.inflight.delete(blob.key)
  }
}

/** Drops the copy on `nodeId`: its row, then its bytes when the node is up (otherwise reconciliation deletes them). */
export async function removeCopy(ctx: LeaderContext, blob: BlobPlacement, nodeId: string, node: NodeView | undefined): Promise<void> {
  await ctx.store.removeReplica(blob.key, nodeId, ctx.fence)
  ctx.counters.removals++
  if (node === undefined || node.state !== 'up') return
  await ctx.client.delete(node.url, blob.key, { fence: ctx.fence }).catch((err: unknown) => {
    if (err instanceof LeaseLost) throw err
    ctx.log.warn({ err, key: blob.key, node: nodeId }, 'removing a copy failed; reconciliation will remove it')
  })
}
