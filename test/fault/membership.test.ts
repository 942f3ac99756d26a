// Membership with the default timings (heartbeat every second, suspect after
// 2 s of silence): GET /api/nodes shows a killed node suspect, and a restarted
// one up, within 3 s of the change, and gateways send no new work to a node
// the moment it is suspect.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { getJson, upload, waitFor } from '../helpers/http.ts'

describe('membership as /api/nodes shows it', { timeout: 60_000 }, () => {
  let cluster: Cluster
  before(async () => {
    // the product's defaults: MAYFLY_HEARTBEAT_INTERVAL_MS=1000, MAYFLY_NODE_SUSPECT_AFTER_SECONDS=2
    cluster = await startCluster({ mode: 'embedded', zones: ['a', 'b', 'c', 'd'], nodeEnv: { MAYFLY_HEARTBEAT_INTERVAL_MS: '1000' } })
  })
  after(async () => cluster?.close())

  async function stateOf(id: string): Promise<string | undefined> {
    const { body } = await getJson(`${cluster.url}/api/nodes`, { headers: { authorization: `Bearer ${cluster.secret}` } })
    return (body.nodes as { id: string; state: string }[]).find((n) => n.id === id)?.state
  }

  test('a killed node is suspect within 3 s, and takes no new blobs', async () => {
    const node = cluster.nodes[0]!
    assert.equal(await stateOf(node.id), 'up')
    await node.kill('SIGKILL')
    const killedAt = Date.now()
    await waitFor('suspect', async () => ((await stateOf(node.id)) === 'suspect' ? true : undefined), 5000)
    const ms = Date.now() - killedAt
    assert.ok(ms <= 3000, `suspect after ${ms} ms`)
    for (let i = 0; i < 5; i++) {
      const res = await upload(cluster.url, Buffer.from(`after ${i}`))
      assert.equal(res.status, 201)
      const replicas = await cluster.infra.metadata.listReplicas((await cluster.infra.metadata.getFile(String(res.body.id)))!.blobKey)
      assert.equal(replicas.includes(node.id), false, 'no new blob goes to a suspect node')
    }
  })

  test('a restarted node is up within 3 s of its start', async () => {
    const old = cluster.nodes[0]!
    const started = Date.now()
    const node = await cluster.addNode('a', old.dataDir)
    await waitFor('up', async () => ((await stateOf(node.id)) === 'up' ? true : undefined), 5000)
    const ms = Date.now() - started
    assert.ok(ms <= 3000, `up after ${ms} ms`)
  })
})
