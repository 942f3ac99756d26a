// DESIGN §5 invariants 2, 4 and 6 with the replication manager at work: a
// node that comes back catches up and drops what died while it was away; a
// byte flipped on disk is found by the scrubber and the copy repaired; a
// drained node ends up empty; a rebalance fills a new node; with two nodes of
// three gone, uploads fail fast and downloads go on.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { readAll, sha256, upload, waitFor } from '../helpers/http.ts'
import { runMayfly } from '../helpers/mayfly-process.ts'
import {
  assertFilesRead, assertInventoryMatches, assertPlacement, FAST_MEMBERSHIP, waitForFactor, waitForLost,
} from '../helpers/replication.ts'
import { BLOCK_BYTES, flipBlobByte } from '../helpers/storage-node-process.ts'

/** Uploads `count` random files; their ids and sha256s. */
async function uploadFiles(cluster: Cluster, count: number, bytes = 64 * 1024, fields: Record<string, string> = {}) {
  const files = new Map<string, string>()
  const tokens = new Map<string, string>()
  for (let i = 0; i < count; i++) {
    const data = randomBytes(bytes)
    const res = await upload(cluster.url, data, fields)
    assert.equal(res.status, 201, JSON.stringify(res.body))
    files.set(String(res.body.id), sha256(data))
    tokens.set(String(res.body.id), String(res.body.delete_token))
  }
  return { files, tokens }
}

async function blobKeys(cluster: Cluster, ids: Iterable<string>): Promise<string[]> {
  const keys: string[] = []
  for (const id of ids) keys.push((await cluster.infra.metadata.getFile(id))!.blobKey)
  return keys
}

describe('healing', { timeout: 240_000 }, () => {
  const clusters: Cluster[] = []
  after(async () => {
    for (const c of clusters) await c.close()
  })
  async function cluster(zones: string[], env: Record<string, string> = {}, nodeEnv: Record<string, string> = {}) {
    const c = await startCluster({ mode: 'real', zones, replicator: true, env: { ...FAST_MEMBERSHIP, ...env }, nodeEnv })
    clusters.push(c)
    return c
  }

  test('a returning node catches up, drops what was deleted or expired meanwhile, and every blob is at its factor', async () => {
    const c = await cluster(['a', 'b', 'c'], { MAYFLY_DELETE_GRACE_SECONDS: '0' })
    const kept = (await uploadFiles(c, 6)).files
    const doomed = await uploadFiles(c, 4)
    const expiring = (await uploadFiles(c, 3, 64 * 1024, { expires_in: '3' })).files
    await waitForFactor(c)
    const away = c.nodes[0]!
    const deadKeys = await blobKeys(c, [...doomed.files.keys(), ...expiring.keys()])
    await away.kill('SIGKILL')
    await waitForLost(c, away.id)

    // while it is away: deletions, expiries (purged from the others), and uploads it misses
    for (const [id, token] of doomed.tokens) {
      const res = await fetch(`${c.url}/api/files/${id}`, { method: 'DELETE', headers: { 'x-delete-token': token } })
      assert.equal(res.status, 204)
    }
    const missed = (await uploadFiles(c, 5)).files
    await waitFor('the dead files purged from the nodes that are up', async () => {
      for (const id of [...doomed.files.keys(), ...expiring.keys()]) {
        if ((await c.infra.metadata.getFile(id))?.purgedAt == null) return undefined
      }
      return true
    }, 30_000)

    const back = await c.addNode('a', away.dataDir)
    assert.equal(back.id, away.id)
    await waitFor('the returning node reconciled', async () => {
      const node = (await c.infra.metadata.listNodes()).find((n) => n.id === away.id)
      return node?.lostAt === null ? true : undefined
    }, 20_000)
    await waitForFactor(c)

    const live = new Map([...kept, ...missed])
    await assertFilesRead(c, live)
    // three nodes, factor three: every live blob on every node, the missed ones copied to it
    await assertPlacement(c, live.keys())
    const held = await assertInventoryMatches(c, back)
    for (const key of await blobKeys(c, live.keys())) assert.ok(held.includes(key), `the returning node holds ${key}`)
    for (const key of deadKeys) assert.equal(held.includes(key), false, `the returning node dropped ${key}`)
    for (const node of c.nodes.filter((n) => n !== away)) await assertInventoryMatches(c, node)
  })

  test('a byte flipped on disk: the scrubber finds it, the copy is repaired, downloads stay right all along', async () => {
    const c = await cluster(['a', 'b', 'c'], {}, { MAYFLY_SCRUB_INTERVAL_SECONDS: '1' })
    const data = randomBytes(3 * BLOCK_BYTES + 1234)
    const res = await upload(c.url, data)
    assert.equal(res.status, 201)
    const id = String(res.body.id)
    await waitForFactor(c)
    const key = (await blobKeys(c, [id]))[0]!
    const damaged = c.nodes[1]!
    await flipBlobByte(damaged.dataDir, key, 2 * BLOCK_BYTES + 7)

    let reads = 0
    let reading = true
    const reader = (async () => {
      while (reading) {
        const r = await fetch(`${c.url}/api/download/${id}`)
        const body = Buffer.from(await r.arrayBuffer())
        assert.equal(r.status, 200)
        assert.equal(sha256(body), sha256(data), 'a download returned wrong bytes')
        reads++
      }
    })()
    try {
      await waitFor('the damaged copy quarantined', async () => {
        const node = (await c.infra.metadata.listNodes()).find((n) => n.id === damaged.id)
        return (node?.quarantined ?? 0) >= 1 ? true : undefined
      }, 20_000)
      // three nodes: the only place for the third copy is the node that lost it
      await waitFor('a good copy back on the damaged node', async () => {
        try {
          const copy = await c.infra.client.get(damaged.url, key)
          return sha256(await readAll(copy.body)) === sha256(data) ? true : undefined
        } catch {
          return undefined // still the damaged copy (cut short), or none yet (404)
        }
      }, 20_000)
    } finally {
      reading = false
      await reader
    }
    assert.ok(reads > 0)
    await waitForFactor(c)
    await assertPlacement(c, [id])
    assert.ok((await c.infra.metadata.listReplicas(key)).includes(damaged.id))
  })

  test('mayfly node drain: afterwards the node holds nothing and every blob is at its factor', async () => {
    const c = await cluster(['a', 'b', 'c', 'c'])
    const { files } = await uploadFiles(c, 12)
    await waitForFactor(c)
    const drained = c.nodes[3]!
    const cli = await runMayfly(['node', 'drain', drained.id, '--url', c.url], { env: { MAYFLY_CLUSTER_SECRET: c.secret } })
    assert.equal(cli.code, 0, cli.stderr)
    assert.match(cli.stderr, /holds nothing now/)
    assert.deepEqual(await assertInventoryMatches(c, drained), [], 'the drained node holds no blob')
    await waitForFactor(c)
    await assertPlacement(c, files.keys(), [drained.id])
    await assertFilesRead(c, files)
    // and it takes no new blobs while draining
    const more = (await uploadFiles(c, 3)).files
    await waitForFactor(c)
    await assertPlacement(c, more.keys(), [drained.id])
  })

  test('mayfly rebalance: a new node takes a share of the copies, never below the factor, zones kept', async () => {
    const c = await cluster(['a', 'b', 'c'])
    const { files } = await uploadFiles(c, 16)
    await waitForFactor(c)
    // three nodes for three copies: none can be drained
    const refused = await fetch(`${c.url}/api/nodes/${c.nodes[0]!.id}/drain`, { method: 'POST', headers: { authorization: `Bearer ${c.secret}` } })
    assert.equal(refused.status, 409)
    assert.equal(((await refused.json()) as { error: string }).error, 'not_enough_nodes')
    const added = await c.addNode('a')
    await c.waitForWritableNodes(4)
    const unauthorized = await fetch(`${c.url}/api/cluster/rebalance`, { method: 'POST' })
    assert.equal(unauthorized.status, 401)
    await unauthorized.body?.cancel()
    const cli = await runMayfly(['rebalance', '--url', c.url], { env: { MAYFLY_CLUSTER_SECRET: c.secret } })
    assert.equal(cli.code, 0, cli.stderr)
    await waitForFactor(c)
    const usage = await c.infra.metadata.replication.nodeUsage()
    const share = usage.find((u) => u.nodeId === added.id)?.replicas ?? 0
    // 48 copies over 4 nodes: the new one holds about a quarter; zone a (two nodes) splits its 16
    assert.ok(share >= 4, `the new node holds ${share} copies: ${JSON.stringify(usage)}`)
    await assertPlacement(c, files.keys())
    for (const node of c.nodes) await assertInventoryMatches(c, node)
    await assertFilesRead(c, files)
  })

  test('two nodes of three down: uploads fail fast with 503, downloads of files with a live copy go on', async () => {
    const c = await cluster(['a', 'b', 'c'])
    const { files } = await uploadFiles(c, 5)
    await waitForFactor(c)
    await c.nodes[0]!.kill('SIGKILL')
    await c.nodes[1]!.kill('SIGKILL')
    for (let i = 0; i < 3; i++) {
      const started = Date.now()
      const res = await upload(c.url, randomBytes(50_000))
      const ms = Date.now() - started
      assert.equal(res.status, 503)
      assert.equal(res.body.error, 'quorum_unavailable')
      assert.equal(typeof res.body.message, 'string')
      assert.ok(ms < 1000, `the 503 took ${ms} ms`)
    }
    await assertFilesRead(c, files)
  })
})
