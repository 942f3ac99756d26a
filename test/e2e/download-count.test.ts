// Issue 13, part 3: the `downloads` count of a link without a limit. Such
// downloads are counted in batches off the download path (download-tally.ts);
// the outside run saw the count stay 0, because the gateways kept showing the
// cached record, filled before any batch was written, for the cache's TTL.
// Now the views that show the count read the primary's record (file-lookup.ts
// current()): downloads through two gateways show up as one total on both, a
// moment after the last download, while the cache TTL is far longer than the
// test (and the download path still reads the cache).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import { startGateway } from '../../src/cli/services.ts'
import { createLogger } from '../../src/log.ts'
import { startCluster, type Cluster, type Mode } from '../helpers/cluster.ts'
import { getJson, upload } from '../helpers/http.ts'
import { waitFor } from '../helpers/wait.ts'

for (const mode of ['embedded', 'real'] as Mode[]) {
  describe(`downloads of an unlimited link are counted on every gateway (${mode})`, { timeout: 60_000 }, () => {
    let cluster: Cluster
    let second: FastifyInstance
    let secondUrl: string
    before(async () => {
      cluster = await startCluster({ mode, worker: false, env: { MAYFLY_CACHE_TTL_SECONDS: '600' } })
      // a second gateway on the same cache and metadata store, with a tally and a file lookup of its own
      second = await startGateway({ ...cluster.config, MAYFLY_HOST: '127.0.0.1' }, createLogger('silent'), { ...cluster.infra, metrics: new Registry() }, cluster.secret, 0)
      secondUrl = `http://127.0.0.1:${(second.server.address() as { port: number }).port}`
    })
    after(async () => {
      await second?.close()
      await cluster?.close()
    })

    test('3 downloads through one gateway and 2 through the other: both say 5, and so does the database', async () => {
      const { status, body } = await upload(cluster.url, randomBytes(4096))
      assert.equal(status, 201)
      const id = String(body.id)
      const info = (base: string) => getJson(`${base}/api/files/${id}`)
      // both gateways have the record cached with 0 downloads
      for (const base of [cluster.url, secondUrl]) assert.equal((await info(base)).body.downloads, 0)
      for (const base of [cluster.url, cluster.url, cluster.url, secondUrl, secondUrl]) {
        const res = await fetch(`${base}/api/download/${id}`)
        await res.arrayBuffer()
        assert.equal(res.status, 200)
      }
      for (const base of [cluster.url, secondUrl]) {
        await waitFor(`5 downloads shown by ${base}`, async () => (await info(base)).body.downloads === 5, 10_000)
      }
      assert.equal((await cluster.infra.metadata.getFile(id))?.downloads, 5)
      // and it stays 5: nothing counted twice
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      for (const base of [cluster.url, secondUrl]) assert.equal((await info(base)).body.downloads, 5)
    })
  })
}
