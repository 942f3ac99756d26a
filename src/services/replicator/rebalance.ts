// `mayfly rebalance`: moves copies from nodes that hold more than their
// share (by capacity) to nodes that hold less, the fullest and the emptiest
// first, until no move would make them more even. A move is copy-then-remove, so a blob has one copy more for
// a moment and never one less, and a move never narrows a blob's zone spread.
import { moveKeepsSpread } from '../../core/replication.ts'
import type { NodeView } from '../../ports.ts'
import { copyBlob, removeCopy } from './actions.ts'
import { nodeMap, type LeaderContext } from './context.ts'

const PAGE = 500
const MOVES_PER_STEP = 20

export interface Rebalancer {
  /** Up to a few moves; `balanced` when no move would help. */
  step(): Promise<{ moves: number; balanced: boolean }>
}

export function createRebalancer(ctx: LeaderContext): Rebalancer {
  const { store } = ctx

  /** Bytes each eligible node holds beyond its share of the total (by capacity); negative when below. */
  async function excess(eligible: NodeView[]): Promise<Map<string, number>> {
    const usage = new Map((await store.nodeUsage()).map((u) => [u.nodeId, u.bytes]))
    const total = eligible.reduce((sum, n) => sum + (usage.get(n.id) ?? 0), 0)
    const capacity = eligible.reduce((sum, n) => sum + Math.max(1, n.capacityBytes), 0)
    return new Map(eligible.map((n) => [n.id, (usage.get(n.id) ?? 0) - (total * Math.max(1, n.capacityBytes)) / capacity]))
  }

  /** Moves copies from `donor` to `receiver` while each narrows their gap; the number moved. */
  async function moveBetween(donor: NodeView, receiver: NodeView, gap: number, nodes: Map<string, NodeView>): Promise<number> {
    let moves = 0
    for (let after = ''; moves < MOVES_PER_STEP && ctx.leading(); ) {
      const page = await store.listNodeBlobs(donor.id, after, PAGE)
      for (const blob of page) {
        if (moves >= MOVES_PER_STEP || !ctx.leading()) break
        // a move of s bytes narrows the gap only if 2s < gap
        if (!blob.live || blob.size === 0 || 2 * blob.size >= gap || ctx.inflight.has(blob.key)) continue
        if (!moveKeepsSpread(blob.nodeIds, donor.id, receiver.id, nodes)) continue
        const sources = blob.nodeIds.map((id) => nodes.get(id)).filter((n): n is NodeView => n !== undefined && n.state === 'up' && !n.failing)
        if (!(await copyBlob(ctx, blob, receiver, sources))) continue
        await removeCopy(ctx, blob, donor.id, donor)
        gap -= 2 * blob.size
        moves++
        ctx.counters.moves++
      }
      if (page.length < PAGE) break
      after = page.at(-1)!.key
    }
    return moves
  }

  return {
    async step() {
      const views = await ctx.nodes.all()
      const nodes = nodeMap(views, ctx.settings.placement)
      const eligible = views.filter((n) => n.state === 'up' && !n.failing && !n.draining && n.lostAt === null)
      if (eligible.length < 2) return { moves: 0, balanced: true }
      const over = await excess(eligible)
      const byExcess = [...eligible].sort((a, b) => over.get(b.id)! - over.get(a.id)!)
      // the fullest pair first; zones may forbid a pair's moves, so the next pairs are tried too
      for (const donor of byExcess.filter((n) => over.get(n.id)! > 0)) {
        for (const receiver of [...byExcess].reverse().filter((n) => over.get(n.id)! < 0)) {
          const moves = await moveBetween(donor, receiver, over.get(donor.id)! - over.get(receiver.id)!, nodes)
          if (moves > 0) return { moves, balanced: false }
        }
      }
      return { moves: 0, balanced: true }
    },
  }
}
