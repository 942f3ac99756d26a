// Keeps every live blob at its factor: walks the blobs below or above it in
// key order, a page at a time, and carries out each blob's plan
// (core/replication.ts). A draining node's copies do not count, so draining
// is repair too: its blobs are copied elsewhere, then its copies removed.
import { LeaseLost } from '../../core/errors.ts'
import { planBlob, spreadToAsk } from '../../core/replication.ts'
import type { BlobPlacement } from '../../ports.ts'
import type { NodeView } from '../../ports.ts'
import { copyBlob, removeCopy } from './actions.ts'
import { nodeMap, type LeaderContext } from './context.ts'

const PAGE = 200

export interface Repairer {
  /**
   * One page of work: the copies and removals made, and whether this page
   * ended a walk over every blob that needs work (the next starts over).
   */
  step(): Promise<{ changes: number; wrapped: boolean }>
}

export function createRepairer(ctx: LeaderContext): Repairer {
  const { store, settings } = ctx
  let after = ''

  /** Carries out one blob's plan; the number of changes made. */
  async function repairBlob(blob: BlobPlacement, nodes: Map<string, NodeView>): Promise<number> {
    const plan = planBlob(blob.nodeIds, nodes, settings.factor, Math.random, blob.size)
    const sources = plan.sources.map((s) => nodes.get(s.id)!)
    let changes = 0
    for (const target of plan.copyTo) {
      if (!ctx.leading()) return changes
      if (await copyBlob(ctx, blob, nodes.get(target.id)!, sources)) changes++
    }
    for (const nodeId of plan.remove) {
      if (!ctx.leading()) return changes
      await removeCopy(ctx, blob, nodeId, nodes.get(nodeId))
      changes++
    }
    return changes
  }

  return {
    async step() {
      const nodes = nodeMap(await ctx.nodes.all(), settings.placement)
      const zones = spreadToAsk(nodes.values(), settings.factor, settings.placement)
      const page = await store.listWork(settings.factor, zones, after, PAGE, settings.settleMs)
      const wrapped = page.length < PAGE
      after = wrapped ? '' : page.at(-1)!.key
      const work = page.filter((b) => !ctx.inflight.has(b.key))
      let changes = 0
      // a few blobs at a time: small blobs are bound by round trips, big ones by the throttle
      let next = 0
      const lane = async () => {
        while (next < work.length && ctx.leading()) {
          const blob = work[next++]!
          try {
            const made = await repairBlob(blob, nodes)
            changes += made // after the await: `changes += await …` would add to a stale total
          } catch (err) {
            // one blob's failure (the metadata store away) must not leave this page's other lanes running into the next
            if (err instanceof LeaseLost) throw err
            ctx.log.warn({ err, key: blob.key }, 'repair of a blob failed; retrying on a later walk')
          }
        }
      }
      await Promise.all(Array.from({ length: settings.concurrency }, lane))
      return { changes, wrapped }
    },
  }
}
