// Which replica a read asks, and when (issue 7, bug 3: a file with one live
// replica was refused). A frozen node (SIGSTOP, a hung disk) accepts TCP
// connections and never answers, so asking the replicas one after another
// spent a whole node timeout on each frozen one before reaching the live one,
// past the patience of the client. Instead a read asks the replicas in order,
// healthy nodes first (readOrder), and hedges, as Dynamo- and Swift-style
// stores do: a replica that has not answered within hedgeAfterMs gets the
// next one asked beside it, a replica that fails hands over at once, the
// first answer wins and the others are cancelled.
//
// The bound: the k-th replica is asked at the latest (k-1)·hedgeAfterMs after
// the start (sooner when one before it fails) and gets nodeTimeoutMs to
// answer, so firstAnswer gives up on whatever is still pending at
// nodeTimeoutMs + (n-1)·hedgeAfterMs and settles by then whatever the nodes
// do (a node trickling bytes too, which the client's silence timeout alone
// would let through). Three replicas, 5 s node timeout, 250 ms hedge: 5.5 s
// at worst; a file whose only live replica is asked last is served after
// 2 × 250 ms plus that replica's own answer.
import { Unavailable } from '../core/errors.ts'
import type { NodeView } from '../ports.ts'

/**
 * The nodes of `replicas` in the order a read should ask them: up and not
 * failing here first, then up but failing a call here a moment ago, then
 * suspect, then suspect and failing, down nodes last. Heartbeats silent for
 * seconds are the stronger sign: one failed call may be one damaged blob or
 * one cut connection, while a frozen or dead node turns suspect within
 * MAYFLY_NODE_SUSPECT_AFTER_SECONDS. Nodes of equal rank are shuffled to
 * spread the load. Replicas no node record knows are left out (nothing to ask).
 */
export function readOrder(known: readonly NodeView[], replicas: readonly string[], random: () => number = Math.random): NodeView[] {
  return known
    .filter((n) => replicas.includes(n.id))
    .map((n) => ({ n, r: rank(n) + random() * 0.5 }))
    .sort((a, b) => a.r - b.r)
    .map((x) => x.n)
}

function rank(node: NodeView): number {
  const state = node.state === 'up' ? 0 : node.state === 'suspect' ? 2 : 4
  return state + (node.failing ? 1 : 0)
}

export interface ReplicaRace<T> {
  /** the replicas to ask, best first */
  candidates: readonly NodeView[]
  /** asks one replica; gives up when `signal` aborts (the race was won or is over) */
  ask: (node: NodeView, signal: AbortSignal) => Promise<T>
  /** frees an answer that came after the race was decided (a body to destroy) */
  discard?: (value: T) => void
  /** a replica failed (not called for one cancelled because another won) */
  onFailure: (node: NodeView, err: unknown) => void
  /** a replica silent this long gets the next one asked beside it */
  hedgeAfterMs: number
  /** how long one replica may take to answer (MAYFLY_NODE_TIMEOUT_MS) */
  nodeTimeoutMs: number
}

export type RaceResult<T> =
  /** `rest`: the candidates that neither won nor failed, in order (for resuming elsewhere later) */
  | { ok: true; node: NodeView; value: T; rest: NodeView[] }
  /** every candidate failed or did not answer in time; one error each */
  | { ok: false; errors: unknown[] }

/** The first answer among the candidates, hedged and bounded as this file's header says; never rejects. */
export function firstAnswer<T>(race: ReplicaRace<T>): Promise<RaceResult<T>> {
  const { candidates, hedgeAfterMs } = race
  const limitMs = race.nodeTimeoutMs + Math.max(0, candidates.length - 1) * hedgeAfterMs
  const running = new Map<NodeView, AbortController>()
  const failed = new Set<NodeView>()
  const errors: unknown[] = []
  let next = 0
  let done = false
  let hedge: ReturnType<typeof setTimeout> | undefined
  let deadline: ReturnType<typeof setTimeout> | undefined

  return new Promise((resolve) => {
    if (candidates.length === 0) return resolve({ ok: false, errors })

    const settle = (result: RaceResult<T>) => {
      done = true
      clearTimeout(hedge)
      clearTimeout(deadline)
      for (const controller of running.values()) controller.abort()
      running.clear()
      resolve(result)
    }
    const fail = (node: NodeView, err: unknown) => {
      failed.add(node)
      errors.push(err)
      race.onFailure(node, err)
    }
    const launch = () => {
      clearTimeout(hedge)
      const node = candidates[next++]!
      const controller = new AbortController()
      running.set(node, controller)
      if (next < candidates.length) hedge = setTimeout(launch, hedgeAfterMs)
      Promise.resolve()
        .then(() => race.ask(node, controller.signal))
        .then(
          (value) => {
            running.delete(node)
            if (done) return race.discard?.(value)
            settle({ ok: true, node, value, rest: candidates.filter((n) => n !== node && !failed.has(n)) })
          },
          (err: unknown) => {
            running.delete(node)
            if (done) return // cancelled, or already given up on at the deadline
            fail(node, err)
            if (next < candidates.length) launch()
            else if (running.size === 0) settle({ ok: false, errors })
          },
        )
    }
    deadline = setTimeout(() => {
      for (const node of running.keys()) {
        fail(node, new Unavailable(`storage node ${node.id} did not answer within ${limitMs} ms`, 'node_unavailable'))
      }
      settle({ ok: false, errors })
    }, limitMs)
    launch()
  })
}
