// The replication manager's node-to-node copies when their source misbehaves
// (issue 7): a source that fails gets the blame, not the healthy target that
// reported it (bug 6); a manager stopped while a copy waits on a stalled
// source aborts it and stops at once, and nothing of that copy stays: no
// replica row, no file on the target (bug 8).
//
// The misbehaving source is a stand-in node in this process: it heartbeats to
// the cluster's gateway like a node, lists the one blob the metadata records
// on it, and answers a GET of that blob as the test says. It reports no free
// space, so it is never a copy target itself.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { replicatorOptions } from '../../src/cli/services.ts'
import { NotFound } from '../../src/core/errors.ts'
import { newId } from '../../src/core/ids.ts'
import { createLogger } from '../../src/log.ts'
import { startReplicationManager, type ReplicationManager } from '../../src/services/replicator/manager.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { newFile } from '../helpers/metadata-fixtures.ts'
import { waitFor } from '../helpers/wait.ts'

interface Blob {
  key: string
  size: number
  sha256: string
}

interface StandInNode {
  id: string
  /** GET requests for the blob's bytes, and whether each one's connection has closed */
  reads: { closed: boolean }[]
  close(): Promise<void>
}

async function startStandInNode(cluster: Cluster, id: string, zone: string, blob: Blob, serve: (res: ServerResponse) => void): Promise<StandInNode> {
  const reads: StandInNode['reads'] = []
  const json = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  const server = createServer((req, res) => {
    req.resume()
    const path = (req.url ?? '').split('?')[0]
    if (req.method === 'GET' && path === '/blobs') return json(res, 200, { blobs: [blob], next: null })
    if (req.method === 'GET' && path === `/blobs/${blob.key}`) {
      const read = { closed: false }
      reads.push(read)
      res.once('close', () => (read.closed = true))
      return serve(res)
    }
    if (req.method === 'DELETE') return res.writeHead(204).end()
    json(res, 404, { error: 'not_found', message: 'no such blob or route' })
  })
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const announcement = { id, url, zone, version: '0', capacityBytes: 1 << 30, freeBytes: 0, usedBytes: blob.size, blobCount: 1, quarantined: 0 }
  const beat = async () => {
    const res = await fetch(`${cluster.url}/internal/nodes/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cluster.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify(announcement),
    })
    await res.body?.cancel()
    assert.equal(res.status, 200)
  }
  await beat()
  const beats = setInterval(() => void beat().catch(() => undefined), 200)
  return {
    id,
    reads,
    close: () => {
      clearInterval(beats)
      return new Promise<void>((closed) => {
        server.closeAllConnections()
        server.close(() => closed())
      })
    },
  }
}

describe('repair copies whose source misbehaves', { timeout: 180_000 }, () => {
  let cluster: Cluster
  const standIns: StandInNode[] = []
  const managers: ReplicationManager[] = []
  const log = createLogger(process.env.MAYFLY_TEST_LOG_LEVEL ?? 'silent')

  before(async () => {
    cluster = await startCluster({
      mode: 'embedded',
      zones: ['a', 'b'],
      worker: false,
      // a target waits ten minutes on a stalled source: only an abort ends such a copy early
      nodeEnv: { MAYFLY_NODE_TIMEOUT_MS: '600000' },
    })
  })
  after(async () => {
    for (const m of managers) await m.stop()
    for (const s of standIns) await s.close()
    await cluster?.close()
  })

  /** A live file whose one recorded copy is on a stand-in node that serves it as `serve` says. */
  async function blobOnStandIn(id: string, zone: string, size: number, serve: (res: ServerResponse) => void): Promise<{ blob: Blob; node: StandInNode }> {
    const blob = { key: newId(), size, sha256: randomBytes(32).toString('hex') }
    const node = await startStandInNode(cluster, id, zone, blob, serve)
    standIns.push(node)
    await cluster.infra.metadata.createFile(newFile({ blob, replicas: [id] }))
    return { blob, node }
  }

  function startManager(): ReplicationManager {
    const manager = startReplicationManager({ ...replicatorOptions(cluster.config, log, cluster.infra), settleMs: 0, rescanMs: 200 })
    managers.push(manager)
    return manager
  }

  async function stopManager(manager: ReplicationManager): Promise<void> {
    await manager.stop()
    managers.splice(managers.indexOf(manager), 1)
  }

  test('a copy whose source fails blames the source, not the healthy target (bug 6)', async () => {
    const { node } = await blobOnStandIn('node-standin-broken', 'c', 1000, (res) => void res.writeHead(500).end())
    const manager = startManager()
    try {
      // the node directory is the one the gateway's uploads use too (as under `mayfly up`)
      await waitFor('the failing source avoided', async () => (await cluster.infra.nodes.byId(node.id))?.failing === true, 30_000)
      assert.ok(node.reads.length > 0, 'a target asked the source for the blob')
      for (const target of cluster.nodes) {
        assert.equal((await cluster.infra.nodes.byId(target.id))?.failing, false, `target ${target.id} is not blamed`)
      }
      assert.equal((await cluster.infra.nodes.writable()).filter((n) => cluster.nodes.some((t) => t.id === n.id)).length, 2, 'uploads still go to both targets')
    } finally {
      await stopManager(manager)
    }
  })

  // without the abort, stop() would wait for the copy's answer (minutes): this bound fails such a run, the fix takes well under a second
  test('stopping the manager aborts a copy waiting on a stalled source: it returns at once and keeps no half-made copy (bug 8)', { timeout: 90_000 }, async () => {
    // 2 MiB of 8, then nothing: the target holds a temp file and waits
    const { blob, node } = await blobOnStandIn('node-standin-stalled', 'd', 8 * 1024 * 1024, (res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-content-sha256': blob.sha256, 'content-length': blob.size })
      res.write(randomBytes(2 * 1024 * 1024))
    })
    const tmpFiles = async () => (await Promise.all(cluster.nodes.map((n) => readdir(join(n.dataDir, 'tmp'))))).flat()
    const manager = startManager()
    try {
      await waitFor('a copy under way on a target', async () => node.reads.length > 0 && (await tmpFiles()).length > 0, 30_000)
    } finally {
      await stopManager(manager)
    }
    assert.equal(manager.leading(), false)
    assert.deepEqual(await cluster.infra.metadata.listReplicas(blob.key), [node.id], 'no replica recorded for the aborted copy')
    await waitFor('the target to let go of the source', () => node.reads.every((r) => r.closed))
    await waitFor('no temp file left on the targets', async () => (await tmpFiles()).length === 0)
    for (const target of cluster.nodes) await assert.rejects(cluster.infra.client.head(target.url, blob.key), NotFound)
  })
})
