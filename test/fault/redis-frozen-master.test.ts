// Issue 8: the Redis master frozen (SIGSTOP) past Sentinel's down-after, then
// resumed. A frozen master keeps its sockets open, so no client sees an error:
// commands time out, and a client would stay on it for good. Mayfly's
// processes must move to the master the Sentinels promote while the old one
// is still frozen; once resumed, the old master is a replica; and what
// Mayfly sent it while it was isolated (commands buffered in its sockets,
// run when it wakes) is not believed afterwards: the replica resyncs from
// the new master, and a link deleted meanwhile stays dead on both gateways.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import type { Cluster } from '../helpers/cluster.ts'
import { upload } from '../helpers/http.ts'
import { startMixedLoad } from '../helpers/load.ts'
import { type MayflyProcess } from '../helpers/mayfly-process.ts'
import type { RedisHa } from '../helpers/redis-ha.ts'
import { startSentinelCluster, type SentinelCluster } from '../helpers/sentinel-cluster.ts'
import { waitFor } from '../helpers/wait.ts'

describe('the Redis master frozen past down-after, then resumed', { timeout: 180_000 }, () => {
  let sc: SentinelCluster
  let ha: RedisHa
  let cluster: Cluster
  let second: MayflyProcess
  let secondUrl: string

  before(async () => {
    sc = await startSentinelCluster({ worker: false })
    ;({ ha, cluster, second, secondUrl } = sc)
  })
  after(() => sc?.close())


  const status = async (base: string, id: string) => {
    const res = await fetch(`${base}/api/download/${id}`)
    await res.arrayBuffer()
    return res.status
  }

  test('every gateway leaves the frozen master for the promoted one; the old one wakes as a replica; nothing it took meanwhile is believed', async () => {
    const first = await ha.master()
    const load = [cluster.url, secondUrl].map((base) => startMixedLoad(base, { clients: 3, maxBytes: 32 * 1024 }))
    sc.onClose(() => Promise.all(load.map((l) => l.stop())))
    await waitFor('uploads through both gateways', () => load.every((l) => l.acked.size >= 10), 30_000)

    // cached on both gateways before the freeze
    const doomed = await upload(cluster.url, randomBytes(4096))
    const doomedId = String(doomed.body.id)
    for (const base of [cluster.url, secondUrl]) assert.equal(await status(base, doomedId), 200)

    await ha.signal(first.name, 'SIGSTOP')
    const frozenAt = Date.now()
    // deleted while the master is frozen: the invalidation goes to a master that does not answer
    const del = await fetch(`${cluster.url}/api/files/${doomedId}`, { method: 'DELETE', headers: { 'x-delete-token': String(doomed.body.delete_token) } })
    assert.equal(del.status, 204)
    // the other gateway first: the one it was deleted through knows, and drops the entry it finds (file-lookup.ts)
    for (const base of [secondUrl, cluster.url]) assert.equal(await status(base, doomedId), 410, `deleted during the freeze, refused by ${base}`)

    let promoted = first
    await waitFor('the Sentinels to promote a replica', async () => {
      promoted = await ha.master().catch(() => first)
      return promoted.name !== first.name
    }, 15_000, 50)
    const promotedAt = Date.now()
    const moved: number[] = []
    for (const base of [cluster.url, secondUrl]) {
      await waitFor(`${base} connected to the new master while the old one is frozen`, async () => {
        const cache = (await sc.cacheOf(base)).detail
        return cache.connection === 'ready' && cache.connected_to === `127.0.0.1:${promoted.port}`
      }, 10_000, 50)
      moved.push(Date.now() - promotedAt)
    }
    // the new master was a replica before the freeze: it holds the live entry the lost invalidation should have dropped
    const ns = cluster.config.MAYFLY_NAMESPACE
    const entry = await ha.direct(promoted.name).get(`${ns}:cache:file:${doomedId}`)
    assert.ok(entry?.startsWith('v') === true && (JSON.parse(entry.slice(1)) as { file: { deletedAt: unknown } }).file.deletedAt === null, `the new master shows the deleted link alive: ${entry}`)
    assert.equal(await status(secondUrl, doomedId), 410, 'the other gateway refuses it, on a master that shows it alive')

    // wake it: Sentinel turns it into a replica of the new master, which it copies whole
    await ha.signal(first.name, 'SIGCONT')
    const old = ha.direct(first.name)
    await waitFor('the old master to be a replica in sync', async () => {
      const role = (await old.call('ROLE').catch(() => null)) as [string, string, number, string] | null
      return role?.[0] === 'slave' && role[3] === 'connected'
    }, 20_000)
    // it holds what the new master holds, not what it took while isolated
    await waitFor('the old master to hold exactly the new master\'s file entries', async () => {
      const [a, b] = await Promise.all([old.keys(`${ns}:cache:file:${doomedId}`), ha.direct(promoted.name).keys(`${ns}:cache:file:${doomedId}`)])
      return a.length === b.length
    }, 10_000)
    for (const base of [secondUrl, cluster.url]) assert.equal(await status(base, doomedId), 410, `still refused by ${base} after the old master woke`)

    const reports = await Promise.all(load.map((l) => l.stop()))
    console.log(
      `redis master frozen: promoted ${promotedAt - frozenAt} ms after SIGSTOP; gateways on the new master ${moved.join(' and ')} ms after the promotion; ` +
        reports.map((r, i) => `gateway ${i + 1}: ${r.uploads} uploads, ${r.downloads} downloads, slowest ${r.slowestMs} ms`).join('; '),
    )
    assert.deepEqual(reports.flatMap((r) => r.errors), [], 'no client request failed')
    for (const ms of moved) assert.ok(ms <= 3000, `moved within 3 s of the promotion: ${ms} ms`)
    assert.ok(second.alive(), second.output())
  })
})
