// The replication manager's pure decisions (planBlob, moveKeepsSpread) and
// its bandwidth throttle, on fake time.
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { setImmediate } from 'node:timers/promises'
import { moveKeepsSpread, planBlob, zoneSpread, type ReplicaNode } from '../../src/core/replication.ts'
import { createThrottle } from '../../src/services/replicator/throttle.ts'

function node(id: string, zone: string, overrides: Partial<ReplicaNode> = {}): ReplicaNode {
  return { id, zone, state: 'up', draining: false, failing: false, freeBytes: 1000, ...overrides }
}

const cluster = (...nodes: ReplicaNode[]) => new Map(nodes.map((n) => [n.id, n]))
const ids = (nodes: readonly { id: string }[]) => nodes.map((n) => n.id).sort()

/** Rolls that cover the whole range, so a rule must hold whichever node the weighting favours. */
const ROLLS = Array.from({ length: 21 }, (_, i) => i / 20.0001)
const fixed = (roll: number) => () => roll

describe('planBlob: copies', () => {
  test('a blob below its factor is copied to zones it is not in yet, never to a holder', () => {
    // zone a has much more free space, so the weighting alone would pick it
    const nodes = cluster(
      node('a1', 'a'), node('a2', 'a', { freeBytes: 1e12 }), node('a3', 'a', { freeBytes: 1e12 }),
      node('b1', 'b'), node('c1', 'c'),
    )
    for (const roll of ROLLS) {
      const plan = planBlob(['a1'], nodes, 3, fixed(roll))
      assert.deepEqual(ids(plan.copyTo), ['b1', 'c1'])
      assert.deepEqual(ids(plan.sources), ['a1'])
      assert.deepEqual(plan.remove, [])
    }
    for (const roll of ROLLS) {
      const plan = planBlob(['a1', 'b1'], nodes, 3, fixed(roll))
      assert.deepEqual(ids(plan.copyTo), ['c1'])
    }
  })

  test('with every zone used, the copy goes to another node, not a holder', () => {
    const nodes = cluster(node('a1', 'a'), node('a2', 'a'), node('b1', 'b'), node('b2', 'b'))
    for (const roll of ROLLS) {
      const plan = planBlob(['a1', 'b1'], nodes, 3, fixed(roll))
      assert.equal(plan.copyTo.length, 1)
      assert.ok(['a2', 'b2'].includes(plan.copyTo[0]!.id))
    }
    // nothing left to copy to: no copy, and no holder twice
    assert.deepEqual(planBlob(['a1', 'a2', 'b1', 'b2'], nodes, 5).copyTo, [])
  })

  test('draining, suspect, down and failing nodes are never targets', () => {
    const nodes = cluster(
      node('a1', 'a'),
      node('b1', 'b', { draining: true, freeBytes: 1e12 }),
      node('c1', 'c', { state: 'suspect', freeBytes: 1e12 }),
      node('d1', 'd', { state: 'down', freeBytes: 1e12 }),
      node('e1', 'e', { failing: true, freeBytes: 1e12 }),
      node('f1', 'a', { freeBytes: 1 }),
    )
    for (const roll of ROLLS) {
      const plan = planBlob(['a1'], nodes, 3, fixed(roll))
      assert.deepEqual(ids(plan.copyTo), ['f1'], 'only the healthy node, even in a used zone')
    }
  })

  test('a zone held by a suspect or down copy counts as used', () => {
    const nodes = cluster(
      node('a1', 'a', { state: 'down' }), node('b1', 'b'),
      node('a2', 'a', { freeBytes: 1e12 }), node('c1', 'c'),
    )
    for (const roll of ROLLS) assert.deepEqual(ids(planBlob(['a1', 'b1'], nodes, 3, fixed(roll)).copyTo), ['c1'])
  })

  test('a draining holder does not count: the blob is copied, its zone is free again, nothing is removed yet', () => {
    const nodes = cluster(node('a1', 'a', { draining: true }), node('b1', 'b'), node('a2', 'a'), node('b2', 'b', { freeBytes: 1e12 }))
    for (const roll of ROLLS) {
      const plan = planBlob(['a1', 'b1'], nodes, 2, fixed(roll))
      assert.deepEqual(ids(plan.copyTo), ['a2'])
      assert.deepEqual(ids(plan.sources), ['a1', 'b1'], 'a draining node is still a source')
      assert.deepEqual(plan.remove, [])
    }
  })

  test('no healthy source: no copy is planned', () => {
    const nodes = cluster(
      node('a1', 'a', { state: 'down' }), node('b1', 'b', { state: 'suspect' }), node('c1', 'c', { failing: true }),
      node('d1', 'd'), node('e1', 'e'),
    )
    assert.deepEqual(planBlob(['a1', 'b1', 'c1', 'gone'], nodes, 5), { copyTo: [], sources: [], remove: [] })
    assert.deepEqual(planBlob(['gone'], nodes, 3), { copyTo: [], sources: [], remove: [] }, 'an unknown holder is never a source')
    // a blob without any replica has no source either
    assert.deepEqual(planBlob([], nodes, 2), { copyTo: [], sources: [], remove: [] })
  })

  test('an unknown holder still counts toward the factor (a short outage copies nothing)', () => {
    const nodes = cluster(node('a1', 'a'), node('b1', 'b'), node('c1', 'c'), node('d1', 'd', { state: 'down' }))
    assert.deepEqual(planBlob(['a1', 'gone'], nodes, 2), { copyTo: [], sources: [nodes.get('a1')], remove: [] })
    assert.deepEqual(planBlob(['a1', 'd1'], nodes, 2).copyTo, [])
  })
})

describe('planBlob: free space', () => {
  test('a node without room for the blob is no target', () => {
    const nodes = cluster(node('a1', 'a'), node('b1', 'b', { freeBytes: 10 }), node('b2', 'b', { freeBytes: 5000 }), node('c1', 'c', { freeBytes: 10 }))
    for (const roll of ROLLS) assert.deepEqual(ids(planBlob(['a1'], nodes, 3, fixed(roll), 1000).copyTo), ['b2'])
    assert.deepEqual(planBlob(['a1'], cluster(node('a1', 'a'), node('b1', 'b', { freeBytes: 10 })), 2, Math.random, 1000).copyTo, [])
  })
})

describe('planBlob: zone spread', () => {
  test('a blob at its factor in fewer zones than the healthy nodes offer gets a copy in a missing zone, then loses a doubled one', () => {
    // copies made while zone b was away: a1, c1, c2
    const nodes = cluster(node('a1', 'a'), node('b1', 'b'), node('c1', 'c'), node('c2', 'c', { freeBytes: 10 }))
    for (const roll of ROLLS) assert.deepEqual(ids(planBlob(['a1', 'c1', 'c2'], nodes, 3, fixed(roll)).copyTo), ['b1'])
    // with the copy made: four copies, and the one that goes is a zone c one (the fuller node)
    assert.deepEqual(planBlob(['a1', 'b1', 'c1', 'c2'], nodes, 3), { copyTo: [], sources: [...nodes.values()], remove: ['c2'] })
  })

  test('no widening when the missing zone has no healthy node, or the spread is all the zones there are', () => {
    const away = cluster(node('a1', 'a'), node('b1', 'b', { state: 'suspect' }), node('c1', 'c'), node('c2', 'c'))
    assert.deepEqual(planBlob(['a1', 'c1', 'c2'], away, 3).copyTo, [])
    const failing = cluster(node('a1', 'a'), node('b1', 'b', { failing: true }), node('c1', 'c'), node('c2', 'c'))
    assert.deepEqual(planBlob(['a1', 'c1', 'c2'], failing, 3).copyTo, [])
    const twoZones = cluster(node('a1', 'a'), node('a2', 'a'), node('c1', 'c'))
    assert.deepEqual(planBlob(['a1', 'a2', 'c1'], twoZones, 3).copyTo, [])
  })
})

describe('planBlob: removals', () => {
  test('extra copies go, keeping the widest zone spread', () => {
    const nodes = cluster(node('a1', 'a'), node('a2', 'a', { freeBytes: 5000 }), node('a3', 'a', { freeBytes: 9000 }), node('b1', 'b', { freeBytes: 1 }))
    const plan = planBlob(['a1', 'a2', 'a3', 'b1'], nodes, 2)
    assert.deepEqual(plan.copyTo, [])
    assert.equal(plan.remove.length, 2)
    assert.equal(plan.remove.includes('b1'), false, 'the only copy in zone b stays, however full its node')
    const kept = ['a1', 'a2', 'a3', 'b1'].filter((id) => !plan.remove.includes(id))
    assert.equal(zoneSpread(kept, nodes), 2)
    assert.deepEqual(kept, ['a3', 'b1'], 'within a zone the emptier node keeps its copy')

    const three = cluster(node('a1', 'a'), node('b1', 'b'), node('b2', 'b'), node('c1', 'c'), node('c2', 'c'))
    const wide = planBlob(['a1', 'b1', 'b2', 'c1', 'c2'], three, 3)
    const left = ['a1', 'b1', 'b2', 'c1', 'c2'].filter((id) => !wide.remove.includes(id))
    assert.equal(left.length, 3)
    assert.equal(zoneSpread(left, three), 3)
  })

  test('never removes while fewer than factor healthy, non-draining copies would stay', () => {
    const nodes = cluster(
      node('a1', 'a'), node('b1', 'b', { state: 'suspect' }), node('c1', 'c', { state: 'down' }),
      node('d1', 'd', { failing: true }), node('e1', 'e', { draining: true }), node('f1', 'f'),
    )
    // 5 copies counted for a factor of 2, but only a1 and f1 are healthy: removing down to them is fine
    const plan = planBlob(['a1', 'b1', 'c1', 'd1', 'f1'], nodes, 2)
    assert.deepEqual([...plan.remove].sort(), ['b1', 'c1', 'd1'])
    // only one healthy copy among four: keep all of them
    assert.deepEqual(planBlob(['a1', 'b1', 'c1', 'd1'], nodes, 2).remove, [])
    assert.deepEqual(planBlob(['a1', 'b1', 'c1', 'gone'], nodes, 3).remove, [])
    // a draining holder with too few healthy others stays
    assert.deepEqual(planBlob(['e1', 'a1', 'b1'], nodes, 2), { copyTo: [], sources: [nodes.get('e1'), nodes.get('a1')], remove: [] })
  })

  test('a draining holder is removed once factor healthy other copies exist', () => {
    const nodes = cluster(node('a1', 'a', { draining: true }), node('b1', 'b'), node('c1', 'c'), node('d1', 'd'))
    assert.deepEqual(planBlob(['a1', 'b1', 'c1'], nodes, 2).remove, ['a1'])
    assert.deepEqual(planBlob(['a1', 'b1', 'c1'], nodes, 2).copyTo, [])
    const both = planBlob(['a1', 'b1', 'c1', 'd1'], nodes, 2)
    assert.ok(both.remove.includes('a1'))
    assert.equal(both.remove.length, 2)
  })

  test('a blob at its factor is left alone', () => {
    const nodes = cluster(node('a1', 'a'), node('b1', 'b'), node('c1', 'c'))
    assert.deepEqual(planBlob(['a1', 'b1'], nodes, 2), { copyTo: [], sources: [nodes.get('a1'), nodes.get('b1')], remove: [] })
  })
})

describe('moveKeepsSpread', () => {
  const nodes = cluster(node('a1', 'a'), node('a2', 'a'), node('b1', 'b'), node('b2', 'b'), node('c1', 'c'))

  test('a move within a zone or to a new zone keeps the spread', () => {
    assert.equal(moveKeepsSpread(['a1', 'b1'], 'a1', 'a2', nodes), true)
    assert.equal(moveKeepsSpread(['a1', 'b1'], 'a1', 'c1', nodes), true)
    assert.equal(moveKeepsSpread(['a1', 'a2'], 'a1', 'b1', nodes), true, 'a move may widen it')
  })

  test('a move that narrows the spread, or to a holder, is refused', () => {
    assert.equal(moveKeepsSpread(['a1', 'b1'], 'a1', 'b2', nodes), false)
    assert.equal(moveKeepsSpread(['a1', 'b1', 'c1'], 'c1', 'a2', nodes), false)
    assert.equal(moveKeepsSpread(['a1', 'b1'], 'a1', 'b1', nodes), false)
    assert.equal(moveKeepsSpread(['a1', 'b1', 'b2'], 'b2', 'a1', nodes), false, 'a1 already holds a copy')
  })

  test('an unknown node counts as a zone of its own', () => {
    assert.equal(zoneSpread(['a1', 'gone', 'lost'], nodes), 3)
    assert.equal(moveKeepsSpread(['a1', 'gone'], 'gone', 'a2', nodes), false)
    assert.equal(moveKeepsSpread(['a1', 'gone'], 'gone', 'b1', nodes), true)
  })
})

/**
 * Fake time for the throttle: `now` is its injected clock, and setTimeout
 * is mocked to the same clock, so waits cost no real time.
 */
function fakeTime(t: TestContext) {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  let clock = 0
  return {
    now: () => clock,
    /** Advances the clock 1 ms at a time until `work` settles; returns the fake ms it took. */
    async run(work: Promise<unknown>, limitMs = 60_000): Promise<number> {
      let settled = false
      void work.then(() => { settled = true }, () => { settled = true })
      const started = clock
      await setImmediate()
      while (!settled) {
        if (clock - started > limitMs) throw new Error(`not done after ${limitMs} ms of fake time`)
        clock++
        t.mock.timers.tick(1)
        await setImmediate()
      }
      await work
      return clock - started
    },
    async idle(ms: number): Promise<void> {
      clock += ms
      t.mock.timers.tick(ms)
      await setImmediate()
    },
  }
}

describe('throttle', () => {
  const RATE = 1000 // bytes per second; the bucket holds one second

  test('taking 10 × the bucket in small pieces takes ~9 s: the average rate stays at the cap', async (t) => {
    const time = fakeTime(t)
    const throttle = createThrottle(RATE, time.now)
    const took = await time.run((async () => {
      for (let i = 0; i < 100; i++) await throttle.take(RATE / 10)
    })())
    // the first second's worth goes at once (the burst), the other 9000 bytes at 1000 B/s;
    // the last take may start as soon as the bucket is not in debt, 100 bytes early
    assert.ok(took >= 8900, `finished after ${took} ms`)
    assert.ok(took <= 9100, `finished after ${took} ms`)
  })

  test('the first second of bytes goes at once', async (t) => {
    const time = fakeTime(t)
    const throttle = createThrottle(RATE, time.now)
    const took = await time.run((async () => {
      for (let i = 0; i < 10; i++) await throttle.take(RATE / 10)
    })())
    assert.equal(took, 0)
  })

  test('a take larger than the bucket runs into debt that the next take waits off', async (t) => {
    const time = fakeTime(t)
    const throttle = createThrottle(RATE, time.now)
    assert.equal(await time.run(throttle.take(5 * RATE)), 0, 'a big blob is not refused or split')
    const waited = await time.run(throttle.take(1))
    assert.ok(waited >= 4000 && waited <= 4100, `waited ${waited} ms`)
  })

  test('idle time refills one second of burst at most', async (t) => {
    const time = fakeTime(t)
    const throttle = createThrottle(RATE, time.now)
    await time.idle(60_000)
    const took = await time.run((async () => {
      for (let i = 0; i < 30; i++) await throttle.take(RATE / 10)
    })())
    assert.ok(took >= 1900 && took <= 2100, `3 s of bytes after a long idle took ${took} ms`)
  })

  test('stop wakes a waiting take, and later takes pass at once', async (t) => {
    const time = fakeTime(t)
    const throttle = createThrottle(RATE, time.now)
    await throttle.take(10 * RATE)
    let done = false
    const waiting = throttle.take(1).then(() => { done = true })
    await setImmediate()
    assert.equal(done, false)
    throttle.stop()
    await waiting
    assert.equal(time.now(), 0, 'no time passed')
    await throttle.take(1_000_000)
    assert.equal(time.now(), 0)
  })
})
