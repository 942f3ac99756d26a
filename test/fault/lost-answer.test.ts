// An upload whose file record committed in PostgreSQL but whose answer was
// lost on the way back (a metadata failover between commit and reply): the
// client gets an error, and the cleanup of the failed upload must not delete
// the bytes the committed record points to (upload-routes.ts, forget()).
//
// The fault is real: a gateway process talks to PostgreSQL through a proxy
// (test/helpers/pg-proxy.ts) that lets the file's insert commit and then
// closes that connection before a byte of the answer reaches the gateway.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { access } from 'node:fs/promises'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { sha256, upload } from '../helpers/http.ts'
import { freePort, spawnMayfly, type MayflyProcess } from '../helpers/mayfly-process.ts'
import { startPgProxy, type CutStatement, type PgProxy } from '../helpers/pg-proxy.ts'
import { blobFilePath } from '../helpers/storage-node-process.ts'
import { waitFor } from '../helpers/wait.ts'

/** what the gateway logs when the cleanup finds the failed upload recorded after all */
const KEPT = /a failed upload was recorded after all/

describe('a createFile that committed but whose answer was lost', { timeout: 120_000 }, () => {
  let cluster: Cluster
  let proxy: PgProxy
  let gateway: MayflyProcess
  let base: string

  before(async () => {
    cluster = await startCluster({ mode: 'real', worker: false })
    const direct = new URL(cluster.env.MAYFLY_DATABASE_URL!)
    proxy = await startPgProxy({ host: direct.hostname, port: Number(direct.port === '' ? 5432 : direct.port) })
    const proxied = new URL(direct.href)
    proxied.host = proxy.hostPort
    const port = await freePort()
    // a gateway of this cluster (same database, nodes, secret) whose every database call goes through the proxy
    gateway = spawnMayfly(['gateway'], {
      ...cluster.env,
      MAYFLY_DATABASE_URL: proxied.href,
      MAYFLY_HOST: '127.0.0.1',
      MAYFLY_PORT: String(port),
      MAYFLY_LOG_LEVEL: 'info',
    })
    base = `http://127.0.0.1:${port}`
    await waitFor('the gateway behind the proxy to be ready', async () => {
      if (!gateway.alive()) throw new Error(`the gateway exited:\n${gateway.output()}`)
      const res = await fetch(`${base}/ready`).catch(() => null)
      await res?.body?.cancel()
      return res?.status === 200
    }, 30_000)
  })
  after(async () => {
    await gateway?.kill('SIGKILL')
    await proxy?.close()
    await cluster?.close()
  })

  /** how many of the cluster's nodes hold the blob's file */
  async function copiesOnDisk(key: string): Promise<number> {
    const held = await Promise.all(cluster.nodes.map((n) => access(blobFilePath(n.dataDir, key)).then(() => true, () => false)))
    return held.filter(Boolean).length
  }

  test('the upload fails, and the recorded file keeps its bytes', async () => {
    let cut: CutStatement | Error | undefined
    proxy.cutAfterCommit(/INSERT INTO files\b/).then(
      (statement) => (cut = statement),
      (err: Error) => (cut = err),
    )
    const data = randomBytes(200_000)
    const res = await upload(base, data).catch((err: unknown) => {
      // a gateway that dies of the lost connection answers nothing: say so, with its last words
      const state = gateway.alive() ? 'alive' : 'exited'
      throw new Error(`the upload got no answer; the gateway has ${state}:\n${gateway.output().slice(-4000)}`, { cause: err })
    })
    const statement = await waitFor("the proxy to cut the connection of the file's insert", () => cut, 5000)
    if (statement instanceof Error) throw statement
    // CREATE_FILE's parameters: $1 the file's id, $2 its blob's key
    const [id, key] = statement.params
    assert.ok(id != null && key != null)

    // pg-db.ts retries a write only when the server provably did nothing; a
    // connection lost after the commit is not that, so the gateway does not
    // try again and the client hears that the metadata store failed
    assert.equal(res.status, 503, JSON.stringify(res.body))
    assert.equal(res.body.error, 'unavailable')
    // ...while the database has the file the client was not told about
    const recorded = await cluster.infra.metadata.getFile(id)
    assert.ok(recorded !== null, 'the insert committed')
    assert.equal(recorded.blobKey, key)
    assert.equal(recorded.sha256, sha256(data))

    // the cleanup of the failed upload starts once every copy has settled:
    // wait until it decided, one way or the other
    const decision = await waitFor("the failed upload's cleanup to keep or remove the bytes", async () => {
      if (KEPT.test(gateway.output())) return 'kept'
      return (await copiesOnDisk(key)) === 0 ? 'removed' : undefined
    }, 30_000)
    assert.equal(decision, 'kept', 'the cleanup removed the bytes of a recorded file')

    assert.ok((await copiesOnDisk(key)) >= 2, 'the copies stay on the nodes')
    assert.ok((await cluster.infra.metadata.listReplicas(key)).length >= 2, 'the copies stay recorded')
    const download = await fetch(`${base}/api/download/${id}`)
    assert.equal(download.status, 200)
    assert.equal(sha256(Buffer.from(await download.arrayBuffer())), sha256(data), 'the recorded file reads whole')
  })
})
