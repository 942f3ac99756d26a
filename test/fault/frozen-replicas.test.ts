// Issue 7, bug 3: a file with one live replica was refused. Two of the three
// nodes holding a file are frozen (SIGSTOP: they accept connections and never
// answer) and the third is up, but ranked last: it failed a call here a
// moment ago, and the frozen ones still count as up (their heartbeats have not
// lapsed yet). Asking one replica after another spent a node timeout on each
// frozen one first (2 × 5 s by default, then a 503 in the field). A client
// that waits twice the node timeout for the answer must get the exact bytes,
// on the whole-read path (< 1 MiB) and the streamed path (3 MiB, and a range
// of it). That patience is a correctness bound (replica-reads.ts: a read
// settles within nodeTimeout + 2 × hedge with three replicas), not a
// performance one; the time taken is printed.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { MiB } from '../helpers/generated-upload.ts'
import { sha256, upload, waitFor } from '../helpers/http.ts'
import type { StorageNodeProcess } from '../helpers/storage-node-process.ts'

const NODE_TIMEOUT_MS = 3000
const PATIENCE_MS = 2 * NODE_TIMEOUT_MS

interface Download {
  status: number
  body: Buffer
  /** until the response's headers came */
  answeredMs: number
}

/** GET as a client that gives up when no answer came within `patienceMs`. */
async function download(url: string, patienceMs: number, headers: Record<string, string> = {}): Promise<Download> {
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(new Error(`no answer within ${patienceMs} ms`)), patienceMs)
  const started = Date.now()
  try {
    const res = await fetch(url, { headers, signal: abort.signal })
    const answeredMs = Date.now() - started
    clearTimeout(timer)
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()), answeredMs }
  } finally {
    clearTimeout(timer)
  }
}

describe('a file with one live replica, the other two frozen', { timeout: 180_000 }, () => {
  let cluster: Cluster
  const files: { url: string; data: Buffer }[] = []
  let frozen: StorageNodeProcess[] = []
  let live: StorageNodeProcess

  before(async () => {
    cluster = await startCluster({
      mode: 'embedded',
      worker: false,
      env: {
        MAYFLY_NODE_TIMEOUT_MS: String(NODE_TIMEOUT_MS),
        // frozen nodes stay `up` here for the whole test, as in the seconds right after a freeze
        MAYFLY_NODE_SUSPECT_AFTER_SECONDS: '120',
      },
    })
    for (const size of [300 * 1024, 3 * MiB]) {
      const data = randomBytes(size)
      const { status, body } = await upload(cluster.url, data)
      assert.equal(status, 201, JSON.stringify(body))
      const key = (await cluster.infra.metadata.getFile(String(body.id)))!.blobKey
      await waitFor('three replicas', async () => ((await cluster.infra.metadata.listReplicas(key)).length === 3 ? true : undefined))
      files.push({ url: String(body.download_url), data })
    }
    live = cluster.nodes[2]!
    frozen = cluster.nodes.slice(0, 2)
    for (const node of frozen) await node.kill('SIGSTOP')
  })
  after(async () => {
    for (const node of cluster?.nodes ?? []) await node.kill('SIGCONT')
    await cluster?.close()
  })

  /** The worst order for the read: the frozen nodes look healthy, the live one failing. */
  async function rankLiveLast(): Promise<void> {
    for (const node of frozen) cluster.infra.nodes.reportSuccess(node.id)
    cluster.infra.nodes.reportFailure(live.id)
    const views = await cluster.infra.nodes.all()
    for (const node of frozen) assert.deepEqual(pick(views.find((v) => v.id === node.id)), { state: 'up', failing: false })
    assert.deepEqual(pick(views.find((v) => v.id === live.id)), { state: 'up', failing: true })
  }
  const pick = (v: { state: string; failing: boolean } | undefined) => ({ state: v?.state, failing: v?.failing })

  test('small and large files download whole with the exact bytes', async () => {
    for (const { url, data } of files) {
      for (let i = 0; i < 3; i++) {
        await rankLiveLast()
        const got = await download(url, PATIENCE_MS)
        console.log(`# ${data.length} bytes: answered after ${got.answeredMs} ms (node timeout ${NODE_TIMEOUT_MS} ms)`)
        assert.equal(got.status, 200, got.body.toString().slice(0, 200))
        assert.equal(got.body.length, data.length)
        assert.equal(sha256(got.body), sha256(data), 'the exact bytes')
      }
    }
  })

  test('a range of the large file is served from the live replica', async () => {
    const { url, data } = files[1]!
    await rankLiveLast()
    const got = await download(url, PATIENCE_MS, { range: 'bytes=1000-2000999' })
    assert.equal(got.status, 206)
    assert.equal(sha256(got.body), sha256(data.subarray(1000, 2001000)), 'the exact bytes of the range')
  })

  test('with every replica frozen, the download fails with a clear 503 within the bound', async () => {
    await live.kill('SIGSTOP')
    try {
      for (const { url } of files) {
        const got = await download(url, PATIENCE_MS)
        console.log(`# every replica frozen: answered after ${got.answeredMs} ms (node timeout ${NODE_TIMEOUT_MS} ms)`)
        assert.equal(got.status, 503)
        assert.equal(JSON.parse(got.body.toString()).error, 'replicas_unavailable')
      }
    } finally {
      await live.kill('SIGCONT')
    }
  })
})
