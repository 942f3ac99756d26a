// What replication fault tests check, against the metadata and the nodes'
// own inventories: every file still reads right, every blob is at its factor
// on live nodes and spread over zones, and no node holds a copy the metadata
// does not record (nor the other way round).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { reachableSpread } from '../../src/core/replication.ts'
import type { Cluster } from './cluster.ts'
import { sha256, upload } from './http.ts'
import type { StorageNodeProcess } from './storage-node-process.ts'
import { waitFor } from './wait.ts'

/** Short membership timings so that a test sees suspect, down and lost within seconds. */
export const FAST_MEMBERSHIP = {
  MAYFLY_NODE_SUSPECT_AFTER_SECONDS: '1',
  MAYFLY_NODE_DOWN_AFTER_SECONDS: '3',
  MAYFLY_NODE_TIMEOUT_MS: '2000',
  MAYFLY_LEADER_LEASE_SECONDS: '2',
}

/** Waits until no live blob is below or above its factor, or in fewer zones than the nodes that are up offer. */
export async function waitForFactor(cluster: Cluster, timeoutMs = 30_000): Promise<void> {
  const factor = cluster.config.MAYFLY_REPLICATION_FACTOR
  await waitFor(
    'every blob at its replication factor and zone spread',
    async () => {
      const zones = reachableSpread(await cluster.infra.nodes.all(), factor)
      const b = await cluster.infra.metadata.replication.backlog(factor, zones)
      return b.blobsBelowFactor === 0 && b.blobsAboveFactor === 0 && b.blobsBelowZoneSpread === 0 ? true : undefined
    },
    timeoutMs,
  )
}

/** Waits until the replication manager declared the node lost. */
export async function waitForLost(cluster: Cluster, nodeId: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(`node ${nodeId} declared lost`, async () => {
    const node = (await cluster.infra.metadata.listNodes()).find((n) => n.id === nodeId)
    return node?.lostAt != null ? true : undefined
  }, timeoutMs)
}

/** Every file downloads with its sha256. */
export async function assertFilesRead(cluster: Cluster, files: Map<string, string>): Promise<void> {
  for (const [id, expected] of files) {
    const res = await fetch(`${cluster.url}/api/download/${id}`)
    const body = Buffer.from(await res.arrayBuffer())
    assert.equal(res.status, 200, `download of ${id}`)
    assert.equal(sha256(body), expected, `bytes of ${id}`)
  }
}

/**
 * Each file's blob has exactly `factor` replicas, none on `excluded` nodes,
 * spread over as many zones as the live nodes allow (up to the factor).
 */
export async function assertPlacement(cluster: Cluster, fileIds: Iterable<string>, excluded: string[] = []): Promise<void> {
  const factor = cluster.config.MAYFLY_REPLICATION_FACTOR
  const nodes = (await cluster.infra.metadata.listNodes()).filter((n) => !excluded.includes(n.id))
  const zoneOf = new Map(nodes.map((n) => [n.id, n.zone]))
  const zones = new Set(nodes.map((n) => n.zone)).size
  for (const id of fileIds) {
    const file = await cluster.infra.metadata.getFile(id)
    assert.ok(file !== null, `file ${id} is recorded`)
    const replicas = await cluster.infra.metadata.listReplicas(file.blobKey)
    assert.equal(replicas.length, factor, `file ${id} has ${factor} replicas: ${replicas.join(', ')}`)
    for (const r of replicas) assert.ok(zoneOf.has(r), `file ${id} has a replica on ${r}, which is excluded or unknown`)
    const spread = new Set(replicas.map((r) => zoneOf.get(r))).size
    assert.equal(spread, Math.min(factor, zones), `file ${id} spans ${spread} zones of ${zones}`)
  }
}

/** The node holds exactly what the metadata records on it. */
export async function assertInventoryMatches(cluster: Cluster, node: StorageNodeProcess): Promise<string[]> {
  const held: string[] = []
  for (let after: string | null = ''; after !== null; ) {
    const page = await cluster.infra.client.list(node.url, { after, limit: 1000 })
    held.push(...page.blobs.map((b) => b.key))
    after = page.next
  }
  const recorded: string[] = []
  for (let after = ''; ; ) {
    const page = await cluster.infra.metadata.replication.listNodeBlobs(node.id, after, 1000)
    recorded.push(...page.map((b) => b.key))
    if (page.length < 1000) break
    after = page.at(-1)!.key
  }
  assert.deepEqual(held.sort(), recorded.sort(), `node ${node.id} holds exactly what the metadata records`)
  return held
}

/** `count` uploads of `bytes` random bytes each, one after another: file id -> sha256. */
export async function uploadRandomFiles(cluster: Cluster, count: number, bytes: number): Promise<Map<string, string>> {
  const files = new Map<string, string>()
  for (let i = 0; i < count; i++) {
    const data = randomBytes(bytes)
    const res = await upload(cluster.url, data)
    assert.equal(res.status, 201, JSON.stringify(res.body))
    files.set(String(res.body.id), sha256(data))
  }
  return files
}

/** The node holding the most bytes of copies: the most repair work when it is lost. */
export async function nodeHoldingMost(cluster: Cluster): Promise<StorageNodeProcess> {
  const usage = await cluster.infra.metadata.replication.nodeUsage()
  const most = usage.reduce((a, b) => (b.bytes > a.bytes ? b : a))
  return cluster.nodes.find((n) => n.id === most.nodeId)!
}
