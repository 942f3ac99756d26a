// Issue 8: the Redis master killed (kill -9) under a mixed load through two
// gateways, on the roadmap's topology (scripts/redis-ha.sh: a master, two
// replicas, three Sentinels). Redis accelerates, it is not a dependency
// (DESIGN §5, invariant 7): no client request fails, no byte is wrong, no
// download limit is exceeded, every process follows the new master without
// a restart, and /api/cluster names it on both gateways within 3 s of its
// promotion. The pause that cache-served downloads see is printed.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import type { Cluster } from '../helpers/cluster.ts'
import { sha256, upload } from '../helpers/http.ts'
import { startMixedLoad, type MixedLoad } from '../helpers/load.ts'
import { runMayfly, type MayflyProcess } from '../helpers/mayfly-process.ts'
import type { RedisHa } from '../helpers/redis-ha.ts'
import { startSentinelCluster, type SentinelCluster } from '../helpers/sentinel-cluster.ts'
import { waitFor } from '../helpers/wait.ts'

const LIMIT = 3

describe('the Redis master killed under load through two gateways', { timeout: 180_000 }, () => {
  let sc: SentinelCluster
  let ha: RedisHa
  let cluster: Cluster
  let second: MayflyProcess
  let secondUrl: string

  before(async () => {
    sc = await startSentinelCluster({ worker: true })
    ;({ ha, cluster, second, secondUrl } = sc)
  })
  after(() => sc?.close())



  /** Downloads every id `LIMIT + 2` times at once, alternating gateways: how many of each got the bytes. */
  async function rush(ids: string[]): Promise<number[]> {
    return Promise.all(
      ids.map(async (id) => {
        const tries = await Promise.all(
          Array.from({ length: LIMIT + 2 }, async (_, i) => {
            const res = await fetch(`${i % 2 === 0 ? cluster.url : secondUrl}/api/download/${id}`)
            await res.arrayBuffer()
            if (res.status !== 200 && res.status !== 410) throw new Error(`download of a limited link: ${res.status}`)
            return res.status === 200 ? 1 : 0
          }),
        )
        return tries.reduce<number>((a, b) => a + b, 0)
      }),
    )
  }

  async function limitedLinks(count: number): Promise<string[]> {
    const ids: string[] = []
    for (let i = 0; i < count; i++) {
      const { status, body } = await upload(i % 2 === 0 ? cluster.url : secondUrl, randomBytes(2048), { max_downloads: String(LIMIT) })
      assert.equal(status, 201)
      ids.push(String(body.id))
    }
    return ids
  }

  test('no client error, no wrong byte, limits exact; both gateways name the new master within 3 s of its promotion', async () => {
    const first = await ha.master()
    assert.equal(first.name, 'redis-1')
    for (const base of [cluster.url, secondUrl]) {
      const cache = await sc.cacheOf(base)
      assert.equal(cache.detail.master, `127.0.0.1:${first.port}`, JSON.stringify(cache))
      assert.equal(cache.detail.mode, 'sentinel')
      assert.equal((cache.detail.sentinels as unknown[]).length, 3)
      assert.equal(cache.detail.sentinels_seeing_master, 3)
      assert.equal(cache.detail.quorum, 2)
      assert.equal((cache.detail.replicas as unknown[]).length, 2)
    }

    // a small file read through both gateways all along: how long do cache-served downloads pause?
    const probeBytes = randomBytes(4096)
    const probe = await upload(cluster.url, probeBytes)
    assert.equal(probe.status, 201)
    const probeId = String(probe.body.id)
    let probing = true
    let slowestProbeMs = 0
    const probeErrors: string[] = []
    const probeLoop = (async () => {
      for (let i = 0; probing; i++) {
        const started = Date.now()
        const res = await fetch(`${i % 2 === 0 ? cluster.url : secondUrl}/api/download/${probeId}`).catch((err: Error) => err)
        if (res instanceof Error) probeErrors.push(res.message)
        else {
          const body = Buffer.from(await res.arrayBuffer())
          if (res.status !== 200 || sha256(body) !== sha256(probeBytes)) probeErrors.push(`probe: ${res.status}`)
        }
        slowestProbeMs = Math.max(slowestProbeMs, Date.now() - started)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    })()

    const loads: MixedLoad[] = [cluster.url, secondUrl].map((base) => startMixedLoad(base, { clients: 4, maxBytes: 64 * 1024 }))
    sc.onClose(() => Promise.all(loads.map((l) => l.stop())))
    await waitFor('20 acknowledged uploads through each gateway', () => loads.every((l) => l.acked.size >= 20), 30_000)
    const beforeKill = await limitedLinks(6)
    const duringOutage = await limitedLinks(6)
    const afterPromotion = await limitedLinks(6)
    // the cache is in use: file entries on the master
    const master = ha.direct(first.name)
    const cachedKeys = await master.keys(`${cluster.config.MAYFLY_NAMESPACE}:cache:file:*`)
    assert.ok(cachedKeys.length > 0, 'file entries are cached in Redis before the kill')
    assert.deepEqual(await rush(beforeKill), beforeKill.map(() => LIMIT), 'limits exact before the kill')

    await ha.signal(first.name, 'SIGKILL')
    const killedAt = Date.now()
    await new Promise((resolve) => setTimeout(resolve, 500))
    const outageCounts = await rush(duringOutage)
    let promoted = first
    await waitFor('the Sentinels to promote a replica', async () => {
      promoted = await ha.master().catch(() => first)
      return promoted.name !== first.name
    }, 15_000, 50)
    const promotedAt = Date.now()
    const named: Record<string, number> = {}
    await Promise.all(
      [cluster.url, secondUrl].map((base) =>
        waitFor(`${base} to name the new master`, async () => {
          const cache = await sc.cacheOf(base)
          if (cache.detail.master !== `127.0.0.1:${promoted.port}`) return false
          named[base] = Date.now() - promotedAt
          return true
        }, 10_000, 50),
      ),
    )
    const promotionCounts = await rush(afterPromotion)
    // the operator's views say the same: mayfly status, and the gauges of /metrics
    const status = await runMayfly(['status', '--url', secondUrl], { env: { MAYFLY_CLUSTER_SECRET: cluster.secret } })
    assert.equal(status.code, 0, status.stderr)
    assert.match(status.stdout, new RegExp(`redis \\(sentinel\\): master 127\\.0\\.0\\.1:${promoted.port};`), status.stdout)
    assert.match(status.stdout, /last failover 20\d\d-/, status.stdout)
    const metrics = await (await fetch(`${cluster.url}/metrics`, { headers: { authorization: `Bearer ${cluster.secret}` } })).text()
    assert.match(metrics, /^mayfly_cache_up 1$/m)
    assert.match(metrics, /^mayfly_cache_last_failover_timestamp_seconds \d{10}/m)

    // the old master comes back, as a replica of the new one (no persistence: never as an empty master)
    await ha.restart(first.name)
    await waitFor('the old master to be a replica', async () => {
      const role = (await ha.direct(first.name).call('ROLE').catch(() => null)) as [string] | null
      return role?.[0] === 'slave'
    }, 15_000)
    // the load goes on through the new master for a while
    const count = () => loads.reduce((n, l) => n + l.acked.size, 0)
    const ackedAtPromotion = count()
    await waitFor('20 more uploads after the promotion', () => count() >= ackedAtPromotion + 20, 30_000)
    probing = false
    await probeLoop
    const reports = await Promise.all(loads.map((l) => l.stop()))

    console.log(
      `redis master kill: promoted ${promotedAt - killedAt} ms after the kill; named by the gateways ` +
        `${Object.values(named).map((ms) => `${ms} ms`).join(' and ')} after the promotion; slowest cache-served download ${slowestProbeMs} ms; ` +
        reports.map((r, i) => `gateway ${i + 1}: ${r.uploads} uploads, ${r.downloads} downloads, slowest ${r.slowestMs} ms (${r.slowest})`).join('; '),
    )
    assert.deepEqual([...reports.flatMap((r) => r.errors), ...probeErrors], [], 'no client request failed')
    assert.deepEqual(outageCounts, duringOutage.map(() => LIMIT), 'limits exact while no master answered')
    assert.deepEqual(promotionCounts, afterPromotion.map(() => LIMIT), 'limits exact right after the promotion')
    for (const ms of Object.values(named)) assert.ok(ms <= 3000, `named within 3 s of the promotion: ${ms} ms`)

    // every acknowledged upload reads back right through the other gateway
    for (const [i, load] of loads.entries()) {
      const other = i === 0 ? secondUrl : cluster.url
      for (const [id, digest] of load.acked) {
        const res = await fetch(`${other}/api/download/${id}`)
        assert.equal(res.status, 200)
        assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest)
      }
    }
    // and the cache works again, on the new master
    await waitFor('file entries cached on the new master', async () => (await ha.direct(promoted.name).keys(`${cluster.config.MAYFLY_NAMESPACE}:cache:file:*`)).length > 0, 10_000)
    assert.ok(second.alive(), second.output())
  })
})
