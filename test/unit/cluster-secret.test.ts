// The CLI's cluster secret opens every storage node: one the user named goes
// where they point it, one found only in the default file (<data dir>/cluster-secret)
// goes to a gateway on this machine only.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { maySend, type FoundSecret } from '../../src/cli/cluster-secret.ts'

const named: FoundSecret = { value: 's'.repeat(32), from: 'MAYFLY_CLUSTER_SECRET', named: true }
const defaultFile: FoundSecret = { value: 's'.repeat(32), from: './data/cluster-secret', named: false }

test('a named secret goes to any gateway', () => {
  for (const url of ['http://localhost:5000', 'https://share.example.org', 'http://10.1.2.3:5000']) assert.equal(maySend(named, url), true, url)
})

test("the default file's secret goes only to this machine", () => {
  for (const url of ['http://localhost:5000', 'http://127.0.0.1:5000', 'http://127.3.4.5:8080', 'http://[::1]:5000', 'http://app.localhost']) {
    assert.equal(maySend(defaultFile, url), true, url)
  }
  for (const url of ['https://share.example.org', 'http://10.1.2.3:5000', 'http://localhost.example.org', 'http://[2001:db8::1]', 'not a url']) {
    assert.equal(maySend(defaultFile, url), false, url)
  }
})
