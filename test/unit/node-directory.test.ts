// The node directory reads no wall clock: a node's state comes from the age
// of its heartbeat as the database measured it plus how long the list has been
// held, and the failure penalty runs on a monotonic clock (issue 7, bug 7), so
// a wall clock stepped back by an hour keeps no node out of uploads for an hour.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createNodeDirectory } from '../../src/cluster/node-directory.ts'
import type { NodeRecord } from '../../src/core/node.ts'

const node = (id: string, heartbeatAgeMs: number): NodeRecord => ({
  id, url: `http://127.0.0.1:9/${id}`, zone: 'a', version: 'test', capacityBytes: 1, freeBytes: 1, usedBytes: 0, blobCount: 0,
  quarantined: 0, lastHeartbeat: new Date(0), heartbeatAgeMs, draining: false, lostAt: null,
})

test('states age with the held list, on the monotonic clock', async () => {
  let t = 1_000
  const directory = createNodeDirectory({
    listNodes: async () => [node('a', 500)],
    timings: { suspectAfterMs: 2_000, downAfterMs: 10_000 },
    refreshMs: 60_000,
    clock: () => t,
  })
  assert.equal((await directory.byId('a'))?.state, 'up')
  t += 1_600 // the list is not read again: its age grows by the time held
  assert.equal((await directory.byId('a'))?.state, 'suspect')
  t += 9_000
  assert.equal((await directory.byId('a'))?.state, 'down')
})

test('a failed call keeps a node out of new work for the penalty, then it is back', async () => {
  let t = 5_000
  const directory = createNodeDirectory({
    listNodes: async () => [node('a', 0), node('b', 0)],
    timings: { suspectAfterMs: 2_000, downAfterMs: 10_000 },
    refreshMs: 0,
    penaltyMs: 3_000,
    clock: () => t,
  })
  directory.reportFailure('a')
  assert.deepEqual((await directory.writable()).map((n) => n.id), ['b'])
  t += 2_999
  assert.equal((await directory.byId('a'))?.failing, true)
  t += 1
  assert.deepEqual((await directory.writable()).map((n) => n.id), ['a', 'b'])
  directory.reportFailure('b')
  directory.reportSuccess('b')
  assert.equal((await directory.byId('b'))?.failing, false)
})

test('a heartbeat heard here keeps a node up while the metadata store records none (issue 13)', async () => {
  let t = 0
  const directory = createNodeDirectory({
    // the store's record stops at the age it had: nothing is recorded any more
    listNodes: async () => [node('a', 0), node('b', 0)],
    timings: { suspectAfterMs: 2_000, downAfterMs: 10_000 },
    refreshMs: 60_000,
    clock: () => t,
  })
  assert.equal((await directory.writable()).length, 2)
  for (let second = 1; second <= 8; second++) {
    t += 1_000
    directory.heard('a', 'http://127.0.0.1:9/a')
    directory.heard('unknown', 'http://127.0.0.1:9/unknown') // not in the store: not listed until its first beat is recorded
  }
  assert.deepEqual((await directory.writable()).map((n) => n.id), ['a'])
  assert.equal((await directory.byId('b'))?.state, 'suspect')
  assert.equal(await directory.byId('unknown'), undefined)
  t += 2_001 // a is silent here too now
  assert.equal((await directory.byId('a'))?.state, 'suspect')
})

test('a node heard at a new url (restarted on another port) is called there until the record is as fresh', async () => {
  let t = 0
  let age = 5_000
  const directory = createNodeDirectory({
    // the store still has the old url, recorded 5 s ago
    listNodes: async () => [node('a', age)],
    timings: { suspectAfterMs: 2_000, downAfterMs: 10_000 },
    refreshMs: 60_000,
    clock: () => t,
  })
  assert.equal((await directory.byId('a'))?.url, 'http://127.0.0.1:9/a')
  t += 100
  directory.heard('a', 'http://127.0.0.1:7777')
  const heard = await directory.byId('a')
  assert.equal(heard?.url, 'http://127.0.0.1:7777', 'the url the heartbeat gave')
  assert.equal(heard?.state, 'up')
  // a record fresher than what was heard here wins again (refreshMs 60 s: a new directory reads it)
  age = 0
  const later = createNodeDirectory({ listNodes: async () => [node('a', age)], timings: { suspectAfterMs: 2_000, downAfterMs: 10_000 }, clock: () => t })
  later.heard('a', 'http://127.0.0.1:7777')
  t += 1_000
  assert.equal((await later.byId('a'))?.url, 'http://127.0.0.1:9/a', 'heard 1 s ago, recorded 0 s before the read: the record')
})

test('a refresh that hangs (the metadata store paused) holds one caller for refreshWaitMs, the others not at all: the last list is used', async () => {
  let t = 0
  let calls = 0
  const directory = createNodeDirectory({
    listNodes: () => (++calls === 1 ? Promise.resolve([node('a', 0)]) : new Promise<NodeRecord[]>(() => {})),
    timings: { suspectAfterMs: 2_000, downAfterMs: 10_000 },
    refreshMs: 500,
    refreshWaitMs: 100,
    clock: () => t,
  })
  assert.equal((await directory.byId('a'))?.state, 'up')
  t += 1_000
  const started = performance.now()
  for (let i = 0; i < 3; i++) assert.equal((await directory.byId('a'))?.state, 'up')
  const waited = performance.now() - started
  assert.ok(waited >= 90 && waited < 300, `the first read waited for the hung refresh about 100 ms, the others not: ${waited} ms`)
  assert.equal(calls, 2, 'one refresh in flight, shared')
  t += 1_500
  directory.heard('a', 'http://127.0.0.1:9/a')
  assert.equal((await directory.byId('a'))?.state, 'up')
})

test('the read that finds the list due gets the new one when it comes quickly: a process that hears no heartbeat sees fresh ages', async () => {
  let t = 0
  let calls = 0
  const directory = createNodeDirectory({
    // the node heartbeats all along: each list the store gives says 100 ms old
    listNodes: async () => [node('a', ++calls === 1 ? 0 : 100)],
    timings: { suspectAfterMs: 1_000, downAfterMs: 10_000 },
    refreshMs: 500,
    clock: () => t,
  })
  assert.equal((await directory.byId('a'))?.state, 'up')
  t += 1_200 // nobody asked for a while: the last list is 1.2 s old
  assert.equal((await directory.byId('a'))?.state, 'up', 'judged by the new list, not by the one that aged')
  assert.equal(calls, 2)
})

test('the first read waits for the list; a failed first read fails', async () => {
  const failing = createNodeDirectory({
    listNodes: () => Promise.reject(new Error('store down')),
    timings: { suspectAfterMs: 2_000, downAfterMs: 10_000 },
  })
  await assert.rejects(failing.all(), /store down/)
})
