import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isId, newId } from '../../src/core/ids.ts'

test('ids are 22 url-safe characters, all distinct, and none starts with - (a command line takes that for an option)', () => {
  const seen = new Set<string>()
  // about 1 in 64 raw draws starts with -: 20,000 ids would hold ~300 of them
  for (let i = 0; i < 20_000; i++) {
    const id = newId()
    assert.ok(isId(id), id)
    assert.ok(!id.startsWith('-'), id)
    seen.add(id)
  }
  assert.equal(seen.size, 20_000)
})
