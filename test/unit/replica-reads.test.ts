// Which replica a read asks, and when (src/cluster/replica-reads.ts): the
// order of the replicas, and the hedged, bounded race between them. Timers
// are node:test's mock timers, so the hedge and the deadline are steps of
// the test, not waits.
import assert from 'node:assert/strict'
import { beforeEach, afterEach, describe, mock, test } from 'node:test'
import { NotFound, Unavailable } from '../../src/core/errors.ts'
import { firstAnswer, readOrder, type RaceResult, type ReplicaRace } from '../../src/cluster/replica-reads.ts'
import type { NodeView } from '../../src/ports.ts'

function node(id: string, state: NodeView['state'] = 'up', failing = false): NodeView {
  return {
    id, url: `http://${id}`, zone: id, version: 'test', capacityBytes: 0, freeBytes: 0, usedBytes: 0, blobCount: 0, quarantined: 0,
    lastHeartbeat: new Date(0), heartbeatAgeMs: 0, draining: false, lostAt: null, state, failing,
  }
}
const ids = (nodes: NodeView[]) => nodes.map((n) => n.id)

describe('readOrder', () => {
  const noShuffle = () => 0

  test('healthy first, then failing here, then suspect, then suspect and failing, down last', () => {
    const known = [
      node('down-failing', 'down', true), node('down', 'down'), node('suspect-failing', 'suspect', true),
      node('suspect', 'suspect'), node('up-failing', 'up', true), node('up'),
    ]
    assert.deepEqual(ids(readOrder(known, ids(known), noShuffle)), ['up', 'up-failing', 'suspect', 'suspect-failing', 'down', 'down-failing'])
  })

  test('a down node is asked after every other, however bad they look', () => {
    const known = [node('down-failing', 'down', true), node('down', 'down'), node('suspect-failing', 'suspect', true), node('up-failing', 'up', true)]
    assert.deepEqual(ids(readOrder(known, ids(known), noShuffle)).slice(2).sort(), ['down', 'down-failing'])
  })

  test('nodes of one rank are shuffled, never across ranks', () => {
    const known = [node('a'), node('b'), node('c', 'up', true)]
    const firsts = new Set<string>()
    for (const draws of [[0, 0.9, 0], [0.9, 0, 0], [0.99, 0.99, 0]]) {
      let i = 0
      const order = ids(readOrder(known, ids(known), () => draws[i++]!))
      firsts.add(order[0]!)
      assert.equal(order[2], 'c', `the failing node is last: ${order.join(',')}`)
    }
    assert.deepEqual([...firsts].sort(), ['a', 'b'])
  })

  test('only the replicas, and only those a node record knows', () => {
    const known = [node('a'), node('b'), node('c')]
    assert.deepEqual(ids(readOrder(known, ['c', 'a', 'gone'], noShuffle)), ['a', 'c'])
  })
})

/** A replica whose answer the test decides; records how it was asked. */
interface Replica {
  asked: boolean
  signal: AbortSignal | null
  answered: Promise<string>
  answer(value: string): void
  fail(err: unknown): void
}

function replica(): Replica {
  const { promise, resolve, reject } = Promise.withResolvers<string>()
  promise.catch(() => {})
  return { asked: false, signal: null, answered: promise, answer: resolve, fail: reject }
}

/** Starts a race over `nodes` with test-driven replicas (hedge 100 ms, node timeout 1 s). */
function race(nodes: NodeView[], overrides: Partial<ReplicaRace<string>> = {}) {
  const replicas = new Map(nodes.map((n) => [n.id, replica()]))
  const failures: { node: string; err: unknown }[] = []
  const discarded: string[] = []
  let result: RaceResult<string> | null = null
  void firstAnswer<string>({
    candidates: nodes,
    ask: (n, signal) => {
      const r = replicas.get(n.id)!
      r.asked = true
      r.signal = signal
      // like the storage node client: a cancelled call rejects (unless it has answered already)
      signal.addEventListener('abort', () => r.fail(new DOMException('aborted', 'AbortError')))
      return r.answered
    },
    discard: (v) => discarded.push(v),
    onFailure: (n, err) => failures.push({ node: n.id, err }),
    hedgeAfterMs: 100,
    nodeTimeoutMs: 1000,
    ...overrides,
  }).then((r) => (result = r))
  return { failures, discarded, result: () => result, r: (id: string) => replicas.get(id)! }
}

const flush = () => new Promise((r) => setImmediate(r))

describe('firstAnswer', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }))
  afterEach(() => mock.timers.reset())

  test('a silent replica gets the next one asked beside it after the hedge delay; the first answer wins, the other is cancelled', async () => {
    const t = race([node('a'), node('b'), node('c')])
    await flush()
    assert.equal(t.r('a').asked, true)
    assert.equal(t.r('b').asked, false)
    mock.timers.tick(99)
    await flush()
    assert.equal(t.r('b').asked, false, 'not before the hedge delay')
    mock.timers.tick(1)
    await flush()
    assert.equal(t.r('b').asked, true)
    assert.equal(t.r('c').asked, false)
    t.r('b').answer('from b')
    await flush()
    const result = t.result()
    assert.ok(result?.ok === true)
    assert.equal(result.node.id, 'b')
    assert.equal(result.value, 'from b')
    assert.deepEqual(ids(result.rest), ['a', 'c'], 'the cancelled and the unasked stay candidates')
    assert.equal(t.r('a').signal?.aborted, true, 'the loser is cancelled')
    assert.deepEqual(t.failures, [], 'a cancelled replica did not fail')
    mock.timers.tick(10_000)
    await flush()
    assert.equal(t.r('c').asked, false, 'nothing is asked once the race is won')
  })

  test('a replica that fails hands over at once, without waiting for the hedge delay', async () => {
    const t = race([node('a'), node('b')])
    await flush()
    t.r('a').fail(new Unavailable('refused', 'node_unavailable'))
    await flush()
    assert.equal(t.r('b').asked, true)
    assert.deepEqual(t.failures.map((f) => f.node), ['a'])
    t.r('b').answer('from b')
    await flush()
    const result = t.result()
    assert.ok(result?.ok === true)
    assert.deepEqual(ids(result.rest), [], 'a failed replica is no candidate any more')
  })

  test('an answer that comes after the race was decided is discarded', async () => {
    const t = race([node('a'), node('b')])
    await flush()
    mock.timers.tick(100)
    await flush()
    // both answer at the same moment: b's is seen first, a's (a body to destroy, say) is handed to discard
    t.r('b').answer('from b')
    t.r('a').answer('from a')
    await flush()
    const result = t.result()
    assert.ok(result?.ok === true)
    assert.equal(result.node.id, 'b')
    assert.deepEqual(t.discarded, ['from a'])
    assert.deepEqual(t.failures, [])
  })

  test('every replica failing: each error, in the order they came', async () => {
    const t = race([node('a'), node('b')])
    await flush()
    const missing = new NotFound('no such blob')
    t.r('a').fail(missing)
    await flush()
    const down = new Unavailable('refused', 'node_unavailable')
    t.r('b').fail(down)
    await flush()
    assert.deepEqual(t.result(), { ok: false, errors: [missing, down] })
  })

  test('silent replicas are given up on at nodeTimeout + (n - 1) × hedge, each counted as failed', async () => {
    const t = race([node('a'), node('b'), node('c')])
    await flush()
    for (let i = 0; i < 2; i++) {
      mock.timers.tick(100)
      await flush()
    }
    assert.ok(['a', 'b', 'c'].every((id) => t.r(id).asked), 'one replica asked per hedge delay')
    mock.timers.tick(1000 - 1)
    await flush()
    assert.equal(t.result(), null, 'the last one asked has its whole node timeout')
    mock.timers.tick(1)
    await flush()
    const result = t.result()
    assert.ok(result?.ok === false)
    assert.equal(result.errors.length, 3)
    assert.ok(result.errors.every((e) => e instanceof Unavailable))
    assert.deepEqual(t.failures.map((f) => f.node).sort(), ['a', 'b', 'c'])
    assert.ok(['a', 'b', 'c'].every((id) => t.r(id).signal?.aborted === true), 'every call is cancelled')
  })

  test('no replica at all: no answer, no error', async () => {
    const t = race([])
    await flush()
    assert.deepEqual(t.result(), { ok: false, errors: [] })
  })

  test('an ask that throws at once counts as a failed replica', async () => {
    const t = race([node('a'), node('b')], {
      ask: (n) => {
        if (n.id === 'a') throw new Error('bad url')
        return Promise.resolve('from b')
      },
    })
    await flush()
    const result = t.result()
    assert.ok(result?.ok === true)
    assert.equal(result.node.id, 'b')
    assert.deepEqual(t.failures.map((f) => f.node), ['a'])
  })
})
