// DESIGN §5 invariant 2 (right bytes or an error) and 5 (a download
// interrupted mid-stream resumes from another replica): replicas damaged on
// disk behind the nodes' backs, and the node serving a download SIGKILLed
// while the body streams. Every download must be a 200 with the exact bytes.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { access } from 'node:fs/promises'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { MiB, downloadHash } from '../helpers/generated-upload.ts'
import { sha256, upload, waitFor } from '../helpers/http.ts'
import { blobFilePath, flipBlobByte, type StorageNodeProcess } from '../helpers/storage-node-process.ts'

describe('damaged replicas and a dying replica under downloads', { timeout: 240_000 }, () => {
  let cluster: Cluster
  const byId = new Map<string, StorageNodeProcess>()

  before(async () => {
    cluster = await startCluster({ mode: 'embedded' })
    for (const node of cluster.nodes) byId.set(node.id, node)
  })
  after(async () => cluster?.close())

  /** Uploads `data` and waits until all three nodes hold it; returns the link and the blob key. */
  async function uploadEverywhere(data: Buffer): Promise<{ url: string; key: string }> {
    // a node that just cut a read short at damage is avoided for new writes for a moment
    await cluster.waitForWritableNodes(3)
    const { status, body } = await upload(cluster.url, data)
    assert.equal(status, 201, JSON.stringify(body))
    const key = (await cluster.infra.metadata.getFile(String(body.id)))!.blobKey
    await waitFor('three replicas', async () => ((await cluster.infra.metadata.listReplicas(key)).length === 3 ? true : undefined))
    return { url: String(body.download_url), key }
  }

  const onDisk = (node: StorageNodeProcess, key: string) => access(blobFilePath(node.dataDir, key)).then(() => true, () => false)

  /**
   * Downloads until every damaged copy was read (a node that finds damage
   * moves the copy out of blobs/), at least `min` times; each must be exact.
   */
  async function downloadUntilFound(url: string, data: Buffer, damaged: StorageNodeProcess[], key: string, min = 6) {
    let downloads = 0
    for (; downloads < 60; downloads++) {
      if (downloads >= min && (await Promise.all(damaged.map((n) => onDisk(n, key)))).every((held) => !held)) break
      const got = await downloadHash(url)
      assert.equal(got.status, 200, `download ${downloads}`)
      assert.equal(got.size, data.length, `download ${downloads}: size`)
      assert.equal(got.sha256, sha256(data), `download ${downloads}: the exact bytes`)
    }
    for (const node of damaged) assert.equal(await onDisk(node, key), false, `the damaged copy on ${node.id} was read and set aside`)
    return downloads
  }

  test('one flipped byte in one replica: every download is exact', async () => {
    const data = randomBytes(4 * MiB)
    const { url, key } = await uploadEverywhere(data)
    const [node] = byId.values()
    // in the middle of the file: the node has sent good blocks when it meets the bad one
    await flipBlobByte(node!.dataDir, key, 2 * MiB + 12345)
    const downloads = await downloadUntilFound(url, data, [node!], key)
    assert.ok(downloads >= 6)
  })

  test('two replicas damaged in different places (first block, and mid-file): every download is exact', async () => {
    const data = randomBytes(3 * MiB + 777)
    const { url, key } = await uploadEverywhere(data)
    const [first, second] = byId.values()
    await flipBlobByte(first!.dataDir, key, 100)
    await flipBlobByte(second!.dataDir, key, 3 * MiB + 5)
    await downloadUntilFound(url, data, [first!, second!], key)
  })

  test('a small file (read whole and checked before sending) with one damaged replica: every download is exact', async () => {
    const data = randomBytes(300 * 1024)
    const { url, key } = await uploadEverywhere(data)
    const [node] = byId.values()
    await flipBlobByte(node!.dataDir, key, 200 * 1024)
    await downloadUntilFound(url, data, [node!], key)
  })

  test('every replica damaged: the download ends in an error, never a clean 200 with wrong bytes', async () => {
    const data = randomBytes(2 * MiB)
    const { url, key } = await uploadEverywhere(data)
    for (const node of byId.values()) await flipBlobByte(node.dataDir, key, MiB + 99)
    const outcome = await downloadHash(url).then(
      (got) => ({ status: got.status, exact: got.sha256 === sha256(data), size: got.size }),
      (err: unknown) => ({ cut: String(err) }),
    )
    // a clean end of a 200 body would tell the client these are the bytes
    assert.ok('cut' in outcome || outcome.status !== 200, `a damaged file was served as a complete 200: ${JSON.stringify(outcome)}`)
  })

  test('the node serving a download is SIGKILLed mid-stream, then another: the download completes exactly', async () => {
    const data = randomBytes(32 * MiB)
    const { url, key } = await uploadEverywhere(data)
    const holders = await cluster.infra.metadata.listReplicas(key)
    const [serving, ...others] = holders
    // The gateway reads first from nodes it has seen no failure from: mark the
    // other two, so we know which node serves and kill exactly that one.
    for (const id of others) cluster.infra.nodes.reportFailure(id)
    let killedServing = false
    let failedOverAt = -1
    let killedSecond = false
    const got = await downloadHash(url, undefined, async (received) => {
      if (!killedServing) {
        killedServing = true
        await byId.get(serving!)!.kill('SIGKILL')
        return
      }
      if (failedOverAt < 0 && (await cluster.infra.nodes.byId(serving!))!.failing) {
        failedOverAt = received
        // one more replica dies while the body streams; the last one finishes it
        await byId.get(others[0]!)!.kill('SIGKILL')
        killedSecond = true
      }
    })
    assert.ok(failedOverAt > 0 && failedOverAt < data.length, `the gateway moved to another replica mid-stream (at ${failedOverAt} bytes)`)
    assert.ok(killedSecond)
    assert.equal(got.status, 200)
    assert.equal(got.size, data.length)
    assert.equal(got.sha256, sha256(data), 'the exact bytes')
  })
})
