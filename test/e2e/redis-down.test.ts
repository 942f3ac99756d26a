// Redis being unreachable slows the gateway down but breaks neither uploads
// nor downloads (issue 2, Cache): the cache port answers misses, and limits
// are enforced by the metadata store, not by the cache.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { getJson, sha256, upload } from '../helpers/http.ts'
import { freePorts } from '../helpers/mayfly-process.ts'


describe('with Redis unreachable', { timeout: 120_000 }, () => {
  let cluster: Cluster

  before(async () => {
    cluster = await startCluster({ mode: 'real', env: { MAYFLY_REDIS_URL: `redis://127.0.0.1:${(await freePorts(1))[0]}` } })
  })
  after(async () => cluster?.close())

  test('uploads, downloads and download limits still work', async () => {
    const data = Buffer.from('still here without a cache\n'.repeat(1000))
    const { status, body } = await upload(cluster.url, data, { max_downloads: '2' })
    assert.equal(status, 201, JSON.stringify(body))
    const results = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const res = await fetch(String(body.download_url))
        return { status: res.status, sha: sha256(new Uint8Array(await res.arrayBuffer())) }
      }),
    )
    assert.equal(results.filter((r) => r.status === 200 && r.sha === sha256(data)).length, 2)
    assert.ok(results.filter((r) => r.status !== 200).every((r) => r.status === 410))
    const info = await getJson(String(body.info_url))
    assert.equal(info.body.downloads, 2)
    const ready = await getJson(`${cluster.url}/ready`)
    assert.equal(ready.status, 200, 'the cache is not needed to be ready')
    const cache = (ready.body.dependencies as { name: string; ok: boolean }[]).find((d) => d.name === 'redis' || d.name === 'cache')
    assert.equal(cache?.ok, false, 'readiness shows the cache as down')
  })
})
