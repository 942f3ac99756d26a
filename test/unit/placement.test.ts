import assert from 'node:assert/strict'
import { test } from 'node:test'
import { inDomains, placeReplicas } from '../../src/core/placement.ts'

const node = (id: string, zone: string, freeBytes = 100) => ({ id, zone, freeBytes })

test('copies go to distinct zones first', () => {
  const nodes = [node('a1', 'a'), node('a2', 'a'), node('a3', 'a'), node('b1', 'b'), node('c1', 'c')]
  for (let i = 0; i < 50; i++) {
    const chosen = placeReplicas(nodes, 3)
    assert.deepEqual(new Set(chosen.map((n) => n.zone)), new Set(['a', 'b', 'c']))
  }
})

test('with fewer zones than copies a zone takes a second copy; never the same node twice', () => {
  const chosen = placeReplicas([node('a1', 'a'), node('a2', 'a'), node('b1', 'b')], 3)
  assert.equal(chosen.length, 3)
  assert.equal(new Set(chosen.map((n) => n.id)).size, 3)
  assert.equal(new Set(chosen.slice(0, 2).map((n) => n.zone)).size, 2, 'the first two copies span both zones')
})

test('with fewer nodes than copies, every node gets one', () => {
  assert.deepEqual(placeReplicas([node('a1', 'a'), node('b1', 'b')], 3).map((n) => n.id).sort(), ['a1', 'b1'])
  assert.deepEqual(placeReplicas([], 3), [])
})

test('picks are weighted by free space', () => {
  const nodes = [node('full', 'a', 0), node('empty', 'a', 1_000_000)]
  let rolls = 0
  const random = () => (rolls++ * 0.37) % 1
  const picks = Array.from({ length: 200 }, () => placeReplicas(nodes, 1, random)[0]!.id)
  assert.ok(picks.filter((id) => id === 'empty').length > 190, 'the node with free space takes almost every copy')
})

test('usedZones: zones that already hold a copy are filled last', () => {
  // zone a has by far the most free space, so only the zone rule keeps copies out of it
  const nodes = [node('a1', 'a', 1e12), node('a2', 'a', 1e12), node('b1', 'b'), node('c1', 'c')]
  for (let i = 0; i < 20; i++) {
    const roll = i / 20
    assert.deepEqual(placeReplicas(nodes, 1, () => roll, new Set(['a', 'b'])).map((n) => n.id), ['c1'])
    assert.deepEqual(placeReplicas(nodes, 2, () => roll, new Set(['a'])).map((n) => n.id).sort(), ['b1', 'c1'])
    const third = placeReplicas(nodes, 3, () => roll, new Set(['a']))
    assert.deepEqual(third.slice(0, 2).map((n) => n.zone).sort(), ['b', 'c'], 'unused zones first')
    assert.equal(third[2]?.zone, 'a', 'then any node')
  }
  // every zone used: any node, weighted by free space as usual
  assert.equal(placeReplicas(nodes, 1, () => 0.5, new Set(['a', 'b', 'c']))[0]?.zone, 'a')
  // the caller's set is not changed
  const used = new Set(['a'])
  placeReplicas(nodes, 3, Math.random, used)
  assert.deepEqual([...used], ['a'])
})

test('strategy nodes ignores zones: a lone node in its own zone is not given a copy of every blob', () => {
  const nodes = [node('a1', 'a'), node('a2', 'a'), node('a3', 'a'), node('a4', 'a'), node('b1', 'b')]
  const rolls = Array.from({ length: 21 }, (_, i) => i / 20.0001)
  const picks = (strategy: 'zones' | 'nodes') => rolls.map((roll) => placeReplicas(inDomains(nodes, strategy), 3, () => roll))
  for (const chosen of picks('zones')) assert.ok(chosen.some((n) => n.id === 'b1'), 'zones: b1 holds every blob')
  const byNodes = picks('nodes')
  assert.ok(byNodes.some((chosen) => !chosen.some((n) => n.id === 'b1')), 'nodes: b1 is one node among five')
  for (const chosen of byNodes) {
    assert.equal(new Set(chosen.map((n) => n.id)).size, 3, 'still three distinct nodes')
    assert.ok(chosen.every((n) => nodes.some((m) => m.id === n.id && m.zone !== n.zone)), 'zones are node domains')
  }
})
