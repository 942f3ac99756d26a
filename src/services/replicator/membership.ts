// The manager's view of node membership. States come from heartbeats
// (core/node.ts: up, suspect after a few silent seconds, down after
// MAYFLY_NODE_DOWN_AFTER_SECONDS); what the manager adds is acting on them:
//   down, not yet lost     -> probed once more directly; if it does not answer
//                             it is declared lost (its replica rows dropped,
//                             so its blobs get copied elsewhere)
//   up again after silence -> reconciled by inventory
//   quarantined a blob     -> reconciled by inventory
//   every auditIntervalMs  -> reconciled by inventory
//   soon(id)               -> reconciled by inventory (copies an operator released)
import type { NodeView } from '../../ports.ts'
import type { NodeState } from '../../core/node.ts'
import type { LeaderContext } from './context.ts'

/** a silent node that answered a probe is probed again after this long */
const REPROBE_MS = 30_000

export interface Membership {
  /** Looks at every node once; returns the nodes that should be reconciled now. */
  tick(nodes: NodeView[]): Promise<NodeView[]>
  /** A node's reconciliation finished. */
  reconciled(nodeId: string): void
  /** A node's reconciliation failed: it is retried later, waiting longer after each failure (up to a minute). */
  failed(nodeId: string): void
  /** The node is to be reconciled at the next tick where it is up (an operator released copies on it). */
  soon(nodeId: string): void
}

export function createMembership(ctx: LeaderContext, options: { auditIntervalMs: number }): Membership {
  const { store, client, log } = ctx
  /** state as of the last tick; a new leader knows nothing, so it reconciles every node once */
  const lastState = new Map<string, NodeState>()
  const lastAudit = new Map<string, number>()
  const quarantinedSeen = new Map<string, number>()
  const due = new Set<string>()
  /** nodes whose reconciliation failed: not before `at` */
  const retry = new Map<string, { at: number; failures: number }>()
  /** silent nodes that answered a probe, and when: not probed (nor logged) again for a while */
  const answeredAt = new Map<string, number>()

  async function answers(node: NodeView): Promise<boolean> {
    try {
      // bounded by the client's node timeout (a frozen node fails it)
      return (await client.health(node.url)).id === node.id
    } catch {
      return false
    }
  }

  async function declareLost(node: NodeView): Promise<void> {
    if (Date.now() - (answeredAt.get(node.id) ?? 0) < REPROBE_MS) return
    if (await answers(node)) {
      answeredAt.set(node.id, Date.now())
      log.warn({ node: node.id, url: node.url }, 'no heartbeats from a node that answers directly: not declaring it lost (check its MAYFLY_CONTROL_URL)')
      return
    }
    answeredAt.delete(node.id)
    const dropped = await store.declareNodeLost(node.id, ctx.fence)
    ctx.counters.lostNodes++
    ctx.repairSoon()
    log.warn({ node: node.id, zone: node.zone, droppedReplicas: dropped }, 'node declared lost: its blobs are copied to other nodes')
  }

  return {
    async tick(nodes) {
      const now = Date.now()
      for (const node of nodes) {
        if (!ctx.leading()) break
        const before = lastState.get(node.id)
        if (before !== undefined && before !== node.state) log.info({ node: node.id, zone: node.zone, from: before, to: node.state }, `node is ${node.state}`)
        lastState.set(node.id, node.state)
        // lost, or lost before, came back (heartbeats after lostAt) and died again before its reconciliation
        const lostSince = node.lostAt !== null && node.lastHeartbeat <= node.lostAt
        if (node.state === 'down' && !lostSince) await declareLost(node)
        if (node.state !== 'up') continue
        const cameBack = before !== 'up' || node.lostAt !== null
        const quarantinedMore = node.quarantined > (quarantinedSeen.get(node.id) ?? node.quarantined)
        quarantinedSeen.set(node.id, node.quarantined)
        const auditDue = now - (lastAudit.get(node.id) ?? 0) >= options.auditIntervalMs
        if (cameBack || quarantinedMore || auditDue) due.add(node.id)
      }
      return nodes.filter((n) => due.has(n.id) && n.state === 'up' && (retry.get(n.id)?.at ?? 0) <= now)
    },
    reconciled(nodeId) {
      due.delete(nodeId)
      retry.delete(nodeId)
      lastAudit.set(nodeId, Date.now())
    },
    soon(nodeId) {
      due.add(nodeId)
    },
    failed(nodeId) {
      const failures = (retry.get(nodeId)?.failures ?? 0) + 1
      retry.set(nodeId, { at: Date.now() + Math.min(60_000, 1000 * 2 ** (failures - 1)), failures })
    },
  }
}
