// The storage nodes a process may send work to. Membership comes from the
// metadata store (nodes announce themselves and heartbeat through a gateway);
// on top of that each process keeps its own short memory of nodes that just
// failed a call, so it stops using them at once instead of waiting for the
// heartbeat to lapse (issue: "they also notice on their own").
//
// A node's state comes from the age of its last heartbeat as the metadata
// store measured it when the list was read, plus the time this process has
// held that list (a monotonic clock): no process's wall clock decides
// (issue 7, bug 7). A process that receives heartbeats itself (a gateway)
// also counts the freshest one it heard: a node is as alive as the newer of
// the two says, so a metadata store that cannot record heartbeats for a few
// seconds (a failover) makes no node look suspect (issue 13). Only nodes the
// store knows are listed: a node is registered by its first recorded beat.
// A heartbeat heard here also carries the node's url: while it is newer
// than the record's, the node is called there (a node restarted on another
// port, or a store migrated with the old ports, was called at an address
// nobody listened on until the list caught up, and a download got 503).
//
// The list is refreshed once it is older than refreshMs. The read that finds
// it due waits for the new one, but at most refreshWaitMs; every other read
// gets the last list at once (only the very first read waits for good). So a
// slow or absent metadata store holds up one request per refreshMs by at
// most refreshWaitMs, and a process that hears no heartbeat itself (a
// replication manager) still judges nodes by a fresh list, not by one that
// aged while nobody asked (under load its nodes flapped suspect, and no
// repair started: test/fault/replicator-failover.test.ts).
import { nodeState, type NodeRecord, type NodeTimings } from '../core/node.ts'
import type { NodeDirectory, NodeView } from '../ports.ts'

export interface NodeDirectoryOptions {
  listNodes: () => Promise<NodeRecord[]>
  timings: NodeTimings
  /** how long the membership list is reused */
  refreshMs?: number
  /** how long the read that finds the list due waits for the new one (default 250 ms) */
  refreshWaitMs?: number
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
  const refreshWaitMs = options.refreshWaitMs ?? 250
  const penaltyMs = options.penaltyMs ?? 3000
  // milliseconds from an arbitrary origin, never jumping with the wall clock:
  // neither the age of the list nor the failure penalty depends on it
  const monotonic = options.clock ?? (() => performance.now())
  const failedAt = new Map<string, number>()
  /** when this process last heard each node's heartbeat (monotonic), and the url it gave */
  const heardAt = new Map<string, { at: number; url: string }>()
  /** the last list read, and when (monotonic) */
  let cached: Loaded | null = null
  let inflight: Promise<Loaded> | null = null

  function refresh(): Promise<Loaded> {
    // one refresh at a time; concurrent callers share it
    inflight ??= options
      .listNodes()
      .then((nodes) => {
        cached = { at: monotonic(), nodes }
        return cached
      })
      .finally(() => {
        inflight = null
      })
    return inflight
  }

  async function load(): Promise<Loaded> {
    if (cached === null) return refresh()
    if (monotonic() - cached.at < refreshMs || inflight !== null) return cached
    // a failed or slow refresh (the metadata store is away) leaves the last list, whose nodes age on
    const last = cached
    const next = refresh().catch(() => last)
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<Loaded>((resolve) => {
      timer = setTimeout(resolve, refreshWaitMs, last)
    })
    try {
      return await Promise.race([next, late])
    } finally {
      clearTimeout(timer)
    }
  }

  function view(node: NodeRecord, heldMs: number, at: number): NodeView {
    const failed = failedAt.get(node.id)
    const heard = heardAt.get(node.id)
    const recordSilentMs = node.heartbeatAgeMs + heldMs
    const heardSilentMs = heard === undefined ? Infinity : at - heard.at
    const silentMs = Math.min(recordSilentMs, heardSilentMs)
    return {
      ...node,
      url: heard !== undefined && heardSilentMs < recordSilentMs ? heard.url : node.url,
      state: nodeState(silentMs, options.timings),
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
    heard(nodeId, url) {
      heardAt.set(nodeId, { at: monotonic(), url })
    },
  }
}
