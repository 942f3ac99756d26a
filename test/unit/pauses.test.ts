import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createPauses } from '../../src/core/pauses.ts'

const settled = async (p: Promise<void>) => {
  let done = false
  void p.then(() => (done = true))
  await new Promise((r) => setImmediate(r))
  return done
}

test('a pause ends by itself after its time', async () => {
  const pauses = createPauses()
  await pauses.sleep(5)
})

test('wake() ends every pause at once; wake(lane) only that lane', async () => {
  const pauses = createPauses()
  const a = pauses.sleep(60_000, 'a')
  const b = pauses.sleep(60_000, 'b')
  const plain = pauses.sleep(60_000)
  pauses.wake('a')
  assert.equal(await settled(a), true)
  assert.equal(await settled(b), false)
  assert.equal(await settled(plain), false)
  pauses.wake()
  assert.equal(await settled(b), true)
  assert.equal(await settled(plain), true)
})

test('a pause begun after wake() is not ended by it', async () => {
  const pauses = createPauses()
  pauses.wake()
  const later = pauses.sleep(60_000)
  assert.equal(await settled(later), false)
  pauses.wake()
  assert.equal(await settled(later), true)
})
