// An upload whose file record committed but whose answer was lost (a
// metadata failover between commit and reply): the client gets an error, and
// the cleanup of the failed upload must not delete the bytes the committed
// record points to.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { Unavailable } from '../../src/core/errors.ts'
import type { NewFile } from '../../src/ports.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { sha256, upload } from '../helpers/http.ts'

describe('a createFile that committed but whose answer was lost', { timeout: 60_000 }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await startCluster({ mode: 'embedded', worker: false })
  })
  after(async () => cluster?.close())

  test('the upload fails, and the recorded file keeps its bytes', async () => {
    const metadata = cluster.infra.metadata
    const createFile = metadata.createFile.bind(metadata)
    let recorded: NewFile | undefined
    Object.assign(metadata, {
      async createFile(file: NewFile) {
        await createFile(file)
        recorded = file
        throw new Unavailable('the connection dropped before the answer')
      },
    })
    const data = randomBytes(200_000)
    let res
    try {
      res = await upload(cluster.url, data)
    } finally {
      Object.assign(metadata, { createFile })
    }
    assert.equal(res.status, 503)
    assert.ok(recorded !== undefined)
    const { id, blob } = recorded
    // the failed upload's cleanup runs once its last copy settles (milliseconds): for 3 s the file must read whole
    const until = Date.now() + 3000
    while (Date.now() < until) {
      const download = await fetch(`${cluster.url}/api/download/${id}`)
      assert.equal(download.status, 200)
      assert.equal(sha256(Buffer.from(await download.arrayBuffer())), sha256(data))
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.ok((await metadata.listReplicas(blob.key)).length >= 2)
  })
})
