// The storage nodes a process may send work to. Membership comes from the
// metadata store (nodes announce themselves and heartbeat through a gateway);
// on top of that each process keeps its own short memory of nodes that just
// failed a call, so it stops using them at once instead of waiting for the
// heartbeat to lapse (issue: "they also notice on their own").
import { nodeState, type NodeRecord, type NodeTimings } from '../core/node.ts'
import type { NodeDirectory, NodeView } from '../ports.ts'

export interface NodeDirectoryOptions {
  listNodes: () => Promise<NodeRecord[]>
  timings: NodeTimings
  /** how long the membership list is reused */
  refreshMs?: number
  /** how long a node that failed a call here is avoided */
  penaltyMs?: number
  now?: () => Date
}

export function createNodeDirectory(options: NodeDirectoryOptions): NodeDirectory {
  const refreshMs = options.refreshMs ?? 500
  const penaltyMs = options.penaltyMs ?? 3000
  const now = options.now ?? (() => new Date())
  const failedAt = new Map<string, number>()
  let cached: { at: number; nodes: NodeRecord[] } | null = null
  let inflight: Promise<NodeRecord[]> | null = null

  async function load(): Promise<NodeRecord[]> {
    const t = Date.now()
    if (cached !== null && t - cached.at < refreshMs) return cached.nodes
    // one refresh at a time; concurrent callers share it
    inflight ??= options
      .listNodes()
      .then((nodes) => {
        cached = { at: Date.now(), nodes }
        return nodes
      })
      .catch((err: unknown) => {
        // the metadata store is down: keep working from the last list we had
        if (cached !== null) return cached.nodes
        throw err
      })
      .finally(() => {
        inflight = null
      })
    return inflight
  }

  function view(node: NodeRecord, at: Date): NodeView {
    const failed = failedAt.get(node.id)
    return {
      ...node,
      state: nodeState(node, at, options.timings),
      failing: failed !== undefined && at.getTime() - failed < penaltyMs,
    }
  }

  return {
    async all() {
      const at = now()
      return (await load()).map((n) => view(n, at))
    },
    async writable() {
      return (await this.all()).filter((n) => n.state === 'up' && !n.failing && !n.draining)
    },
    async byId(id) {
      return (await this.all()).find((n) => n.id === id)
    },
    reportFailure(nodeId) {
      failedAt.set(nodeId, now().getTime())
    },
    reportSuccess(nodeId) {
      failedAt.delete(nodeId)
    },
  }
}
