// The short form of the chaos run (issue 10; bench/chaos/run.ts, `npm run
// chaos -- --short`): the whole lab (`mayfly lab up`) under a paced mixed
// load, a gateway and the PostgreSQL primary's postmaster killed in turn
// (the faults that cross the most tiers; a node and a RabbitMQ leader
// killed have fault tests of their own), then every acknowledged operation
// checked against the cluster. Every invariant must
// hold; each fault's client-visible pause stays within its INFRA-NOTES floor
// (none at all for a gateway) plus a margin for a shared
// 2-core machine, and only a killed gateway may fail requests (those in
// flight on it).
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { runChaos, SHORT_FAULTS } from '../../bench/chaos/run.ts'

/** what a loaded 2-core machine adds to a pause, beyond the "floor plus 1 s" */
const MARGIN_MS = 2000

test('chaos, short form: every invariant holds through a gateway and a PostgreSQL primary killed', { timeout: 600_000 }, async (t) => {
  // the lab itself (runChaos makes the directory reachable by the postgres and rabbitmq users)
  const dir = await mkdtemp(join(tmpdir(), 'mayfly-chaos-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const result = await runChaos({ dir, faults: SHORT_FAULTS, log: () => {} })
  assert.deepEqual(result.verdict.violations.map((v) => `${v.invariant}: ${v.fileId}: ${v.detail}`), [])
  for (const c of result.verdict.checked) assert.ok(c.files > 0, `${c.invariant} was checked on something`)
  for (const f of result.faults) {
    const bound = (f.floorMs ?? 0) + MARGIN_MS
    assert.ok(f.uploadPauseMs <= bound, `${f.fault}: uploads paused ${f.uploadPauseMs} ms (bound ${bound})`)
    assert.ok(f.downloadPauseMs <= bound, `${f.fault}: downloads paused ${f.downloadPauseMs} ms (bound ${bound})`)
    if (f.fault === 'kill gateway') assert.ok(f.errors <= 5, `${f.fault}: ${f.errors} errors, more than the requests in flight: ${f.errorSamples.join('; ')}`)
    else assert.equal(f.errors, 0, `${f.fault}: ${f.errorSamples.join('; ')}`)
  }
})
