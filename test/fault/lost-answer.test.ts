// Writes that committed in PostgreSQL but whose answer was lost on the way
// back (a metadata failover between commit and reply) are looked up, not
// applied twice: the upload's file record, a limited link's download claim
// and a batch of counts of an unlimited one. The store replays them on a new
// connection, and each one's key (the file id, the claim's and the batch's
// receipts, migrations/005) turns the replay into a lookup.
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

describe('writes that committed but whose answers were lost', { timeout: 120_000 }, () => {
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

  /** Arms the proxy's cut for the next statement matching `pattern`; resolves to what it cut. */
  function armCut(pattern: RegExp): () => Promise<CutStatement> {
    let cut: CutStatement | Error | undefined
    proxy.cutAfterCommit(pattern).then(
      (statement) => (cut = statement),
      (err: Error) => (cut = err),
    )
    return async () => {
      const statement = await waitFor(`the proxy to cut the connection of ${pattern}`, () => cut, 5000)
      if (statement instanceof Error) throw statement
      return statement
    }
  }

  /** the request's answer, or the gateway's last words if it gave none */
  async function answered<T>(request: Promise<T>): Promise<T> {
    return request.catch((err: unknown) => {
      const state = gateway.alive() ? 'alive' : 'exited'
      throw new Error(`no answer; the gateway has ${state}:\n${gateway.output().slice(-4000)}`, { cause: err })
    })
  }

  test('an upload whose record committed is acknowledged once, with its bytes', async () => {
    const cut = armCut(/INSERT INTO files\b/)
    const data = randomBytes(200_000)
    const res = await answered(upload(base, data))
    const statement = await cut()
    // CREATE_FILE's parameters: $1 the file's id, $2 its blob's key
    const [id, key] = statement.params
    assert.ok(id != null && key != null)
    assert.equal(res.status, 201, JSON.stringify(res.body))
    assert.equal(res.body.id, id, 'the acknowledged id is the recorded one')
    const recorded = await cluster.infra.metadata.getFile(id)
    assert.equal(recorded?.blobKey, key)
    assert.equal(recorded?.sha256, sha256(data))
    assert.ok((await copiesOnDisk(key)) >= 2, 'the copies stay on the nodes')
    assert.ok((await cluster.infra.metadata.listReplicas(key)).length >= 2, 'the copies stay recorded')
    const download = await fetch(`${base}/api/download/${id}`)
    assert.equal(download.status, 200)
    assert.equal(sha256(Buffer.from(await download.arrayBuffer())), sha256(data), 'the recorded file reads whole')
  })

  test("a download claim whose answer was lost counts once: the link's last download is served", async () => {
    const data = randomBytes(50_000)
    const up = await upload(base, data, { max_downloads: '2' })
    assert.equal(up.status, 201)
    const id = String(up.body.id)
    assert.equal((await fetch(`${base}/api/download/${id}`).then(async (r) => (await r.arrayBuffer(), r.status))), 200)
    const cut = armCut(/WITH claimed AS/)
    const last = await answered(fetch(`${base}/api/download/${id}`))
    await cut()
    assert.equal(last.status, 200, 'the replayed claim found its receipt: the second of two downloads')
    assert.equal(sha256(Buffer.from(await last.arrayBuffer())), sha256(data))
    assert.equal((await cluster.infra.metadata.getFile(id))?.downloads, 2, 'counted once')
    const third = await fetch(`${base}/api/download/${id}`)
    await third.body?.cancel()
    assert.equal(third.status, 410, 'the link is used up')
  })

  test("a batch of counts whose answer was lost counts once", async () => {
    const up = await upload(base, randomBytes(10_000))
    assert.equal(up.status, 201)
    const id = String(up.body.id)
    const cut = armCut(/UPDATE files SET downloads = files\.downloads \+ c\.n/)
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${base}/api/download/${id}`)
      await res.arrayBuffer()
      assert.equal(res.status, 200)
    }
    await cut()
    const counted = await waitFor('the batch to be counted', async () => {
      const file = await cluster.infra.metadata.getFile(id)
      return file !== null && file.downloads > 0 ? file.downloads : undefined
    }, 10_000)
    // one more interval of the tally: a batch sent twice would show now
    await new Promise((resolve) => setTimeout(resolve, 2500))
    assert.equal((await cluster.infra.metadata.getFile(id))?.downloads, 3)
    assert.equal(counted, 3)
  })
})
