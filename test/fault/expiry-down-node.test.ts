// DESIGN §5 invariant 4 (expiry is exact and complete) with a node that is
// down when the link dies: the bytes and variants leave the live nodes, the
// file is not marked purged while the down node still holds its copies, and
// once the node is back (same data directory) its copies go too and the file
// is marked purged, within bounded time.
import assert from 'node:assert/strict'
import { access } from 'node:fs/promises'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { getJson, photoPaths, upload, waitFor } from '../helpers/http.ts'
import { blobFilePath, type StorageNodeProcess } from '../helpers/storage-node-process.ts'

describe('expiry with a storage node down', { timeout: 180_000 }, () => {
  let cluster: Cluster

  before(async () => {
    cluster = await startCluster({ mode: 'embedded', env: { MAYFLY_DELETE_GRACE_SECONDS: '1' } })
  })
  after(async () => cluster?.close())

  const holds = (node: StorageNodeProcess, key: string) => access(blobFilePath(node.dataDir, key)).then(() => true, () => false)
  async function keysOn(node: StorageNodeProcess, keys: string[]): Promise<string[]> {
    const held = await Promise.all(keys.map((k) => holds(node, k)))
    return keys.filter((_, i) => held[i])
  }

  test('a node down at expiry loses its copies when it returns, and only then is the file purged', async () => {
    const photo = (await photoPaths()).find((p) => p.includes('bythewater'))!
    const expiresIn = 8
    const { status, body } = await upload(cluster.url, photo, { expires_in: String(expiresIn) })
    assert.equal(status, 201, JSON.stringify(body))
    const id = String(body.id)
    const expiresAt = Date.parse(String(body.expires_at))

    // the original and both variants, three copies each, before the link dies
    const variants = await waitFor('variants made', async () => {
      const vs = await cluster.infra.metadata.listVariants(id)
      return vs.every((v) => v.state !== 'pending') ? vs : undefined
    }, 30_000)
    assert.deepEqual(variants.map((v) => v.state), ['ready', 'ready'], JSON.stringify(variants))
    const file = (await cluster.infra.metadata.getFile(id))!
    const keys = [file.blobKey, ...variants.map((v) => v.blob!.key)]
    await waitFor('three copies of each blob', async () => {
      const counts = await Promise.all(keys.map((k) => cluster.infra.metadata.listReplicas(k)))
      return counts.every((r) => r.length === 3) ? true : undefined
    })
    for (const node of cluster.nodes) assert.deepEqual(await keysOn(node, keys), keys, `${node.id} holds everything`)
    assert.ok(Date.now() < expiresAt - 1000, 'the setup finished before the link died (raise expiresIn if this fails)')

    const [down, ...live] = cluster.nodes as [StorageNodeProcess, ...StorageNodeProcess[]]
    const zone = (await cluster.infra.nodes.byId(down.id))!.zone
    await down.kill('SIGKILL')

    const dead = await waitFor('the link to die', async () => {
      const res = await fetch(`${cluster.url}/api/download/${id}`, { method: 'HEAD' })
      return res.status === 410 ? getJson(`${cluster.url}/api/download/${id}`) : undefined
    }, (expiresIn + 5) * 1000)
    assert.equal(dead.body.error, 'expired')
    assert.ok(Date.now() >= expiresAt, 'not before its time')

    await waitFor('the live nodes to drop every copy', async () => {
      const left = await Promise.all(live.map((n) => keysOn(n, keys)))
      return left.every((k) => k.length === 0) ? true : undefined
    }, 30_000)
    // two more full sweeps of our own: still nothing may mark it purged
    for (let passes = 0; passes < 2;) if ((await cluster.worker!.sweeper.sweepOnce()).ran) passes++
    assert.equal((await cluster.infra.metadata.getFile(id))!.purgedAt, null, 'not purged while the down node holds copies')
    for (const key of keys) assert.deepEqual(await cluster.infra.metadata.listReplicas(key), [down.id], `${key} is still recorded on the down node`)
    assert.deepEqual(await keysOn(down, keys), keys, 'the down node still has its copies on disk')

    const back = await cluster.addNode(zone, down.dataDir)
    assert.equal(back.id, down.id)
    const returnedAt = Date.now()
    await waitFor('the returning node to drop its copies and the file to be purged', async () => {
      const left = await keysOn(back, keys)
      const purgedAt = (await cluster.infra.metadata.getFile(id))?.purgedAt ?? null
      return left.length === 0 && purgedAt !== null ? true : undefined
    }, 30_000)
    assert.ok(Date.now() - returnedAt < 30_000)
    assert.equal((await getJson(`${cluster.url}/api/download/${id}`)).status, 410, 'the link stays dead')
    for (const key of keys) assert.deepEqual(await cluster.infra.metadata.listReplicas(key), [])
  })
})
