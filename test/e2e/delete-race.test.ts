// Issue 7, bug 2: a DELETE racing downloads. Before the fix a download that
// read the live record from the database before the DELETE and filled the
// cache after the DELETE's invalidation wrote the live record back, and the
// dead link was served again for MAYFLY_CACHE_TTL_SECONDS. The promise now:
// once the DELETE's 204 has arrived, no download that starts afterwards
// succeeds. Run many times, with downloads before, while and after the DELETE,
// on a cold cache (the moment of the race), in both modes. Two gateways share
// the cache and the metadata store, and the downloads go to both: the one that
// deleted the link also remembers its death (file-lookup.ts), so only the
// other one shows whether a racing fill can still write the live record back.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import { startGateway } from '../../src/cli/services.ts'
import { createLogger } from '../../src/log.ts'
import { startCluster, type Cluster, type Mode } from '../helpers/cluster.ts'
import { upload } from '../helpers/http.ts'

const ITERATIONS = 200
/** downloads started around the DELETE, at spread-out moments */
const AROUND = 12
/** downloads started once the 204 is in: the ones a poisoned cache would serve */
const AFTER = 4

interface Outcome {
  startedAt: number
  status: number
}

async function download(url: string): Promise<Outcome> {
  const startedAt = performance.now()
  const res = await fetch(url)
  await res.arrayBuffer()
  return { startedAt, status: res.status }
}

/**
 * One race: the DELETE goes to `base`, the downloads alternate between `base`
 * and `other`. Returns the downloads that started after the 204 and did not answer 410.
 */
async function race(base: string, other: string): Promise<{ late: Outcome[]; served: number; afterCount: number }> {
  const { status, body } = await upload(base, randomBytes(2048))
  assert.equal(status, 201, JSON.stringify(body))
  const path = `/api/download/${String(body.id)}`
  const gateway = (i: number) => (i % 2 === 0 ? other : base)
  const downloads: Promise<Outcome>[] = []
  for (let i = 0; i < AROUND; i++) {
    // spread over the few milliseconds a DELETE takes: some start first, some meanwhile
    downloads.push(sleep(Math.floor(Math.random() * 6)).then(() => download(gateway(i) + path)))
  }
  await sleep(Math.floor(Math.random() * 3))
  const del = await fetch(`${base}/api/files/${String(body.id)}`, { method: 'DELETE', headers: { 'x-delete-token': String(body.delete_token) } })
  const deletedAt = performance.now()
  assert.equal(del.status, 204)
  for (let i = 0; i < AFTER; i++) downloads.push(download(gateway(i) + path))
  const outcomes = await Promise.all(downloads)
  for (const o of outcomes) assert.ok(o.status === 200 || o.status === 410, `unexpected status ${o.status}`)
  const afterDelete = outcomes.filter((o) => o.startedAt > deletedAt)
  return { late: afterDelete.filter((o) => o.status !== 410), served: outcomes.filter((o) => o.status === 200).length, afterCount: afterDelete.length }
}

function raceSuite(mode: Mode): void {
  describe(`a DELETE racing downloads (${mode})`, { timeout: 280_000 }, () => {
    let cluster: Cluster
    let second: FastifyInstance
    let secondUrl: string
    before(async () => {
      // a long TTL: a poisoned entry would outlive the whole iteration
      cluster = await startCluster({ mode, worker: false, env: { MAYFLY_CACHE_TTL_SECONDS: '60' } })
      // a second gateway on the same cache and metadata store, with a file lookup of its own
      const config = { ...cluster.config, MAYFLY_HOST: '127.0.0.1' }
      second = await startGateway(config, createLogger('silent'), { ...cluster.infra, metrics: new Registry() }, cluster.secret, 0)
      secondUrl = `http://127.0.0.1:${(second.server.address() as { port: number }).port}`
    })
    after(async () => {
      await second?.close()
      await cluster?.close()
    })

    test(`after the 204 no download succeeds (${ITERATIONS} races)`, async () => {
      let poisoned = 0
      let served = 0
      let checked = 0
      for (let i = 0; i < ITERATIONS; i++) {
        const r = await race(cluster.url, secondUrl)
        if (r.late.length > 0) poisoned++
        served += r.served
        checked += r.afterCount
      }
      // the race really ran: downloads were served before the DELETE, and many started after it
      assert.ok(served > 0, 'no download was served before its DELETE: the race never happened')
      assert.ok(checked >= ITERATIONS * AFTER)
      assert.equal(poisoned, 0, `${poisoned} of ${ITERATIONS} deleted links were served after their DELETE answered 204`)
    })
  })
}

raceSuite('embedded')
raceSuite('real')
