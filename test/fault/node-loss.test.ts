// DESIGN §5 invariant 5 (one node down interrupts nobody) under a mixed load,
// on four nodes in zones a, b, c, c: a node killed with SIGKILL, and a node
// frozen with SIGSTOP. Clients see no error, no acknowledged upload is lost,
// no request waits past the node timeout for a frozen node, and once the node
// is declared lost the replication manager restores the factor on the others
// with the zone spread kept. The frozen node then thaws, is reconciled, and
// holds exactly what the metadata records.
import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { startMixedLoad } from '../helpers/load.ts'
import { waitFor } from '../helpers/http.ts'
import {
  assertFilesRead, assertInventoryMatches, assertPlacement, FAST_MEMBERSHIP, waitForFactor, waitForLost,
} from '../helpers/replication.ts'

const NODE_TIMEOUT_MS = Number(FAST_MEMBERSHIP.MAYFLY_NODE_TIMEOUT_MS)

async function fourNodes(): Promise<Cluster> {
  return startCluster({ mode: 'real', zones: ['a', 'b', 'c', 'c'], replicator: true, env: FAST_MEMBERSHIP })
}

describe('one storage node of four lost under load', { timeout: 180_000 }, () => {
  const clusters: Cluster[] = []
  after(async () => {
    for (const c of clusters) await c.close()
  })

  test('killed (SIGKILL): zero client errors, nothing lost, the factor restored with the zone spread kept', async () => {
    const cluster = await fourNodes()
    clusters.push(cluster)
    const load = startMixedLoad(cluster.url)
    await waitFor('20 acknowledged uploads', async () => (load.acked.size >= 20 ? true : undefined))
    const zoneA = cluster.nodes[0]!
    await zoneA.kill('SIGKILL')
    await waitForLost(cluster, zoneA.id)
    // the load runs on through the repair
    await waitForFactor(cluster)
    const report = await load.stop()
    assert.deepEqual(report.errors, [], 'no client saw an error')
    assert.ok(report.uploads > 20 && report.downloads > 20, `a real load ran: ${JSON.stringify(report)}`)
    // uploads acknowledged in the last moments get their third copy now
    await waitForFactor(cluster)
    await assertFilesRead(cluster, load.acked)
    // zones b, c, c are left: every blob spans both
    await assertPlacement(cluster, load.acked.keys(), [zoneA.id])
  })

  test('frozen (SIGSTOP): no request waits past the node timeout; thawed, it is reconciled', async () => {
    const cluster = await fourNodes()
    clusters.push(cluster)
    const load = startMixedLoad(cluster.url)
    await waitFor('20 acknowledged uploads', async () => (load.acked.size >= 20 ? true : undefined))
    const frozen = cluster.nodes[3]! // one of zone c
    await frozen.kill('SIGSTOP')
    try {
      await waitForLost(cluster, frozen.id)
      await waitForFactor(cluster)
      const report = await load.stop()
      assert.deepEqual(report.errors, [], 'no client saw an error')
      // one node timeout at most is spent on the frozen node, plus the request's own work
      assert.ok(report.slowestMs < NODE_TIMEOUT_MS + 1500, `the slowest request took ${report.slowestMs} ms: ${report.slowest}`)
      await waitForFactor(cluster)
      await assertFilesRead(cluster, load.acked)
      await assertPlacement(cluster, load.acked.keys(), [frozen.id])
    } finally {
      await frozen.kill('SIGCONT')
    }
    // thawed: it heartbeats again, is reconciled (its copies are extra now) and drops them
    await waitFor('the thawed node reconciled', async () => {
      const node = (await cluster.infra.metadata.listNodes()).find((n) => n.id === frozen.id)
      return node?.lostAt === null ? true : undefined
    }, 20_000)
    await waitForFactor(cluster)
    for (const node of cluster.nodes) await assertInventoryMatches(cluster, node)
    await assertPlacement(cluster, load.acked.keys())
  })
})
