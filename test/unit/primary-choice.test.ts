// Which member of a multi-host url takes Mayfly's writes (primary-locator.ts):
// the writable one on the highest timeline, and never a demoted primary on an
// older timeline while the newest one was heard from lately, even when the
// new primary misses a probe (issue 10: a chaos run wrote to the old primary
// of a frozen Patroni leader while the new one's probe timed out, and those
// writes were rewound away).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { choosePrimary, type MemberState } from '../../src/adapters/postgres/primary-locator.ts'

const member = (role: MemberState['role'], timeline: number | null): MemberState => ({
  name: 'x', role, timeline, lsn: null, lagBytes: null, lagSeconds: null, receiver: null, error: null,
})

test('the writable member on the highest timeline wins; the current one keeps a tie', () => {
  assert.equal(choosePrimary([member('primary', 3), member('primary', 4), member('replica', null)], 0, -1), 1)
  assert.equal(choosePrimary([member('primary', 4), member('primary', 4)], 1, -1), 1)
  assert.equal(choosePrimary([member('replica', null), member('unreachable', null)], null, -1), null)
})

test('an older timeline than the newest seen lately is never chosen, even alone', () => {
  // the new primary (timeline 4) missed its probe: the orphan on 3 must not take the writes
  assert.equal(choosePrimary([member('primary', 3), member('unreachable', null), member('replica', null)], 1, 4), null)
  assert.equal(choosePrimary([member('primary', 3), member('primary', 4)], 0, 4), 1)
  // once the newest timeline has been silent long enough the caller lowers the bar (-1): the old one is trusted again
  assert.equal(choosePrimary([member('primary', 3), member('unreachable', null)], null, -1), 0)
})
