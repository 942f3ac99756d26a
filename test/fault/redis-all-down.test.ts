// Issue 8: every Redis process down at once (the master, both replicas and
// the three Sentinels, kill -9) under a load through two gateways. Redis
// accelerates, it is not a dependency: uploads and downloads go on, download
// limits hold (the metadata store decides them), /ready stays 200 and names
// the cache as degraded; when the topology comes back on the same ports,
// every process finds the master again and caching resumes by itself.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import type { Cluster } from '../helpers/cluster.ts'
import { getJson, upload } from '../helpers/http.ts'
import { startMixedLoad } from '../helpers/load.ts'
import { type MayflyProcess } from '../helpers/mayfly-process.ts'
import type { RedisHa } from '../helpers/redis-ha.ts'
import { startSentinelCluster, type SentinelCluster } from '../helpers/sentinel-cluster.ts'
import { waitFor } from '../helpers/wait.ts'

const LIMIT = 2
const DOWN_MS = 5_000

describe('every Redis process down, then back', { timeout: 180_000 }, () => {
  let sc: SentinelCluster
  let ha: RedisHa
  let cluster: Cluster
  let second: MayflyProcess

  before(async () => {
    sc = await startSentinelCluster({ worker: false })
    ;({ ha, cluster, second } = sc)
  })
  after(() => sc?.close())

  const gateways = () => sc.gateways
  const ready = (base: string) => getJson(`${base}/ready`, { headers: { authorization: `Bearer ${cluster.secret}` } })

  /** `LIMIT + 3` downloads of a fresh limited link at once, across both gateways: how many got the bytes */
  async function rush(): Promise<number> {
    const { status, body } = await upload(cluster.url, randomBytes(2048), { max_downloads: String(LIMIT) })
    assert.equal(status, 201)
    const got = await Promise.all(
      Array.from({ length: LIMIT + 3 }, async (_, i) => {
        const res = await fetch(`${gateways()[i % 2]}/api/download/${String(body.id)}`)
        await res.arrayBuffer()
        assert.ok(res.status === 200 || res.status === 410, `a limited download answered ${res.status}`)
        return res.status === 200 ? 1 : 0
      }),
    )
    return got.reduce<number>((a, b) => a + b, 0)
  }

  test('uploads and downloads go on, limits hold, /ready is 200 and degraded; caching resumes when Redis is back', async () => {
    const ns = cluster.config.MAYFLY_NAMESPACE
    const load = gateways().map((base) => startMixedLoad(base, { clients: 3, maxBytes: 32 * 1024 }))
    sc.onClose(() => Promise.all(load.map((l) => l.stop())))
    await waitFor('uploads through both gateways', () => load.every((l) => l.acked.size >= 10), 30_000)
    for (const base of gateways()) assert.deepEqual((await ready(base)).body.degraded, [])

    await ha.killEverything()
    const downAt = Date.now()
    const acked = () => load.reduce((n, l) => n + l.acked.size, 0)
    const ackedAtKill = acked()
    const limited: number[] = []
    const readiness: { status: number; degraded: unknown }[] = []
    while (Date.now() - downAt < DOWN_MS) {
      limited.push(await rush())
      // one look at the dependencies answers /ready for a second (cluster-routes.ts)
      for (const base of Date.now() - downAt > 1_500 ? gateways() : []) {
        const { status, body } = await ready(base)
        readiness.push({ status, degraded: body.degraded })
      }
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    const ackedWhileDown = acked() - ackedAtKill

    await ha.startAgain()
    const backAt = Date.now()
    for (const base of gateways()) {
      await waitFor(`${base} to see the cache again`, async () => ((await ready(base)).body.degraded as string[]).length === 0, 15_000)
    }
    const seenAgainMs = Date.now() - backAt
    // caching resumed by itself: downloads fill the new master with file entries
    const master = await ha.master()
    await waitFor('file entries cached again', async () => (await ha.direct(master.name).keys(`${ns}:cache:file:*`)).length > 0, 15_000)
    const limitedAfter = await rush()
    const reports = await Promise.all(load.map((l) => l.stop()))

    console.log(
      `all Redis down ${DOWN_MS} ms: ${ackedWhileDown} uploads acknowledged meanwhile, ${limited.length} limited links rushed; ` +
        `cache seen again ${seenAgainMs} ms after the restart; ` +
        reports.map((r, i) => `gateway ${i + 1}: ${r.uploads} uploads, ${r.downloads} downloads, slowest ${r.slowestMs} ms`).join('; '),
    )
    assert.deepEqual(reports.flatMap((r) => r.errors), [], 'no client request failed')
    assert.ok(ackedWhileDown > 10, `uploads went on while Redis was down: ${ackedWhileDown}`)
    assert.deepEqual(limited, limited.map(() => LIMIT), 'every limit held while Redis was down')
    assert.equal(limitedAfter, LIMIT)
    assert.ok(readiness.length >= 4, `readiness looked at while Redis was down: ${readiness.length}`)
    for (const r of readiness) {
      assert.equal(r.status, 200, '/ready stays 200')
      assert.deepEqual(r.degraded, ['cache'], '/ready names the cache as degraded')
    }
    assert.ok(second.alive(), second.output())
  })
})
