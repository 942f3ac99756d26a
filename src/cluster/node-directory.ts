// The storage nodes a process may send work to. Membership comes from the
// metadata store (nodes announce themselves and heartbeat through a gateway);
// on top of that each process keeps its own short memory of nodes that just
// failed a call, so it stops using them at once instead of waiting for the
// heartbeat to lapse (issue: "they also notice on their own").
//
// A node's state comes from the age of its last heartbeat as the metadata
// store measured it when the list was read, plus the time this process has
// held that list (a monotonic clock): no process's wall clock decides
// (issue 7, bug 7).
import { nodeState, type NodeRecord, type NodeTimings } from '../core/node.ts'
import type { NodeDirectory, NodeView } from '../ports.ts'

export interface NodeDirectoryOptions {
  listNodes: () => Promise<NodeRecord[]>
  timings: NodeTimings
  /** how long the membership list is reused */
  refreshMs?: number
  /** how long a node that failed a call here is avoided */
  penaltyMs?: number
  /** a monotonic clock in ms (tests); default performance.now */
  clock?: () => number
}


interface Loaded {
  at: number
  nodes: NodeRecord[]
}

export function createNodeDirectory(options: NodeDirectoryOptions): NodeDirectory {
  const refreshMs = options.refreshMs ?? 500
  const penaltyMs = options.penaltyMs ?? 3000
  // milliseconds from an arbitrary origin, never jumping with the wall clock:
  // neither the age of the list nor the failure penalty depends on it
  const monotonic = options.clock ?? (() => performance.now())
  const failedAt = new Map<string, number>()
  /** the last list read, and when (monotonic) */
  let cached: Loaded | null = null
  let inflight: Promise<Loaded> | null = null

  async function load(): Promise<Loaded> {
    if (cached !== null && monotonic() - cached.at < refreshMs) return cached
    // one refresh at a time; concurrent callers share it
    inflight ??= options
      .listNodes()
      .then((nodes) => {
        cached = { at: monotonic(), nodes }
        return cached
      })
      .catch((err: unknown) => {
        // the metadata store is down: keep working from the last list we had (its nodes age on)
        if (cached !== null) return cached
        throw err
      })
      .finally(() => {
        inflight = null
      })
    return inflight
  }

  function view(node: NodeRecord, heldMs: number, at: number): NodeView {
    const failed = failedAt.get(node.id)
    return {
      ...node,
      state: nodeState(node.heartbeatAgeMs + heldMs, options.timings),
      failing: failed !== undefined && at - failed < penaltyMs,
    }
  }

  return {
    async all() {
      const loaded = await load()
      const at = monotonic()
      const heldMs = Math.max(0, at - loaded.at)
      return loaded.nodes.map((n) => view(n, heldMs, at))
    },
    async writable() {
      return (await this.all()).filter((n) => n.state === 'up' && !n.failing && !n.draining)
    },
    async byId(id) {
      return (await this.all()).find((n) => n.id === id)
    },
    reportFailure(nodeId) {
      failedAt.set(nodeId, monotonic())
    },
    reportSuccess(nodeId) {
      failedAt.delete(nodeId)
    },
  }
}
