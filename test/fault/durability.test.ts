// DESIGN §5 invariant 1 (acknowledged means durable) and 5 (one node down
// interrupts nobody), with storage nodes killed by SIGKILL: right after an
// upload was acknowledged, in the middle of an upload, and two of three at
// once. A SIGKILL keeps the page cache, so it cannot tell an fsynced blob
// from one that is only written: the last suite runs a gateway and three
// nodes under strace and checks, by the order of their system calls, that a
// node says 201 only after the steps DESIGN §4 gives (fsync of the file,
// rename, fsync of the directory), and that the gateway says 201 only after
// reading that from a write quorum of nodes.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { access, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { MiB, downloadHash, uploadGenerated } from '../helpers/generated-upload.ts'
import { sha256, upload } from '../helpers/http.ts'
import { blobFilePath, startStorageNodeProcess, type StorageNodeProcess } from '../helpers/storage-node-process.ts'
import { freePort, spawnMayfly, type MayflyProcess } from '../helpers/mayfly-process.ts'
import { answersHeard, blobCommit, GATEWAY_CALLS, keyOfCreated, parseTrace, sentCreated, straceWrapper, type BlobCommit, type Syscall } from '../helpers/syscall-trace.ts'
import { waitFor } from '../helpers/wait.ts'
import { diskState } from '../e2e/api-suite.ts'

describe('durability with storage nodes killed', { timeout: 240_000 }, () => {
  let cluster: Cluster
  /** the running process of each node, by node id (a restart replaces it) */
  const byId = new Map<string, StorageNodeProcess>()

  before(async () => {
    // a silent node is suspect after 1 s, so the heartbeat path is exercised within the test
    cluster = await startCluster({ mode: 'embedded', env: { MAYFLY_NODE_SUSPECT_AFTER_SECONDS: '1' } })
    for (const node of cluster.nodes) byId.set(node.id, node)
  })
  after(async () => cluster?.close())

  async function fileKey(id: string): Promise<string> {
    const file = await cluster.infra.metadata.getFile(id)
    assert.ok(file !== null, `file ${id} is recorded`)
    return file.blobKey
  }

  /** SIGKILLs a node; restartKilled() brings it back. */
  const killed = new Set<string>()
  async function kill(nodeId: string): Promise<void> {
    killed.add(nodeId)
    await byId.get(nodeId)!.kill('SIGKILL')
  }

  /**
   * Restarts the killed nodes on their data directories and waits until the
   * gateway writes to each at its new url (a restart picks a new port).
   */
  async function restartKilled(): Promise<void> {
    for (const nodeId of killed) {
      const old = byId.get(nodeId)!
      const zone = (await cluster.infra.nodes.byId(nodeId))!.zone
      const node = await cluster.addNode(zone, old.dataDir)
      assert.equal(node.id, nodeId, 'a restarted node keeps its id')
      byId.set(nodeId, node)
      await waitFor(`${nodeId} writable at ${node.url}`, async () =>
        (await cluster.infra.nodes.writable()).some((n) => n.id === nodeId && n.url === node.url) ? true : undefined)
    }
    killed.clear()
    await cluster.waitForWritableNodes(3)
  }

  test('an acknowledged upload survives the SIGKILL of a node that holds it, whichever node it is', async () => {
    const victims = new Set<string>()
    // until every node was the victim once (a round whose quorum was only past victims kills one again)
    for (let round = 0; victims.size < 3 && round < 8; round++) {
      const data = randomBytes(MiB + 4096 * (round + 1))
      const { status, body } = await upload(cluster.url, data)
      assert.equal(status, 201, JSON.stringify(body))
      assert.equal(body.sha256, sha256(data))
      const key = await fileKey(String(body.id))
      const atAck = await cluster.infra.metadata.listReplicas(key)
      assert.ok(atAck.length >= 2, `acknowledged on ${atAck.length} nodes`)
      // fsynced and renamed into place on every node named at the acknowledgement
      for (const nodeId of atAck) await access(blobFilePath(byId.get(nodeId)!.dataDir, key))
      // always a node the acknowledgement counted on
      const victim = atAck.find((id) => !victims.has(id)) ?? atAck[0]!
      victims.add(victim)
      await kill(victim)
      for (let i = 0; i < 3; i++) {
        const got = await downloadHash(String(body.download_url))
        assert.equal(got.status, 200, `round ${round}, download ${i}`)
        assert.equal(got.sha256, sha256(data), `round ${round}, download ${i}: the exact bytes`)
      }
      await restartKilled()
    }
    assert.equal(victims.size, 3, 'every node was the victim once')
  })

  test('a node killed in the middle of a 24 MiB upload does not fail it', async () => {
    await restartKilled()
    const [victim] = [...byId.values()]
    let killedAt = -1
    const up = await uploadGenerated(cluster.url, {
      size: 24 * MiB,
      // the request waits here while the node dies: 6 MiB are through, 18 MiB still to come
      beforeChunk: async (sent) => {
        if (killedAt < 0 && sent >= 6 * MiB) {
          killedAt = sent
          await kill(victim!.id)
        }
      },
    })
    assert.equal(killedAt, 6 * MiB, 'the node died mid-upload')
    assert.equal(up.status, 201, JSON.stringify(up.body))
    assert.equal(up.body.sha256, up.sha256)
    assert.equal(up.body.size, 24 * MiB)
    const key = await fileKey(String(up.body.id))
    const replicas = await cluster.infra.metadata.listReplicas(key)
    assert.ok(replicas.length >= 2, `stored on ${replicas.length} nodes`)
    assert.ok(!replicas.includes(victim!.id), 'the dead node is not counted as a replica')
    const got = await downloadHash(String(up.body.download_url))
    assert.equal(got.status, 200)
    assert.equal(got.size, 24 * MiB)
    assert.equal(got.sha256, up.sha256)
  })

  test('with two of three nodes dead an upload gets a fast 503 and leaves nothing on the survivor', async () => {
    await restartKilled()
    const [survivor, ...victims] = [...byId.values()]
    const before = (await diskState(survivor!.dataDir)).blobs.sort()
    for (const v of victims) await kill(v.id)

    // first while the gateway still thinks them up (it finds out by the failed calls),
    // then once their heartbeats have lapsed (it refuses before reading the body)
    for (const phase of ['failed calls', 'heartbeats'] as const) {
      if (phase === 'heartbeats') {
        await waitFor('the dead nodes to be suspect', async () => {
          const nodes = await cluster.infra.nodes.all()
          return nodes.filter((n) => n.state === 'up').length === 1 ? true : undefined
        })
      }
      const started = Date.now()
      const res = await uploadGenerated(cluster.url, { size: 2 * MiB, chunkBytes: 256 * 1024 })
      const took = Date.now() - started
      assert.equal(res.status, 503, `${phase}: ${JSON.stringify(res.body)}`)
      assert.equal(res.body.error, 'quorum_unavailable', phase)
      assert.equal(typeof res.body.message, 'string')
      // no waiting for a node timeout (MAYFLY_NODE_TIMEOUT_MS is 3 s here)
      assert.ok(took < 2500, `${phase}: the 503 took ${took} ms`)
    }
    await waitFor('nothing of the refused uploads on the survivor', async () => {
      const state = await diskState(survivor!.dataDir)
      return state.temp.length === 0 && state.blobs.sort().join() === before.join() ? true : undefined
    })
  })
})

describe('acknowledged means fsynced: the order of the system calls', { timeout: 120_000 }, () => {
  const secret = randomBytes(24).toString('base64url')
  const writeQuorum = 2
  let dir: string
  let gateway: MayflyProcess
  let gatewayTrace: string
  let base: string
  const nodes: { process: StorageNodeProcess; trace: string }[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-trace-'))
    // the gateway and the three nodes all run under strace, each into its own trace
    const port = await freePort()
    base = `http://127.0.0.1:${port}`
    gatewayTrace = join(dir, 'gateway.trace')
    gateway = spawnMayfly(
      ['gateway'],
      {
        MAYFLY_DATA_DIR: join(dir, 'gateway'),
        MAYFLY_CLUSTER_SECRET: secret,
        MAYFLY_HOST: '127.0.0.1',
        MAYFLY_PORT: String(port),
        MAYFLY_WRITE_QUORUM: String(writeQuorum),
        MAYFLY_LOG_LEVEL: 'warn',
      },
      { wrapper: straceWrapper(gatewayTrace, GATEWAY_CALLS) },
    )
    await waitFor('the traced gateway to answer', async () => {
      if (!gateway.alive()) throw new Error(`the gateway exited:\n${gateway.output()}`)
      const res = await fetch(`${base}/health`).catch(() => null)
      await res?.body?.cancel()
      return res?.status === 200
    }, 30_000)
    for (const zone of ['a', 'b', 'c']) {
      const trace = join(dir, `node-${zone}.trace`)
      const node = await startStorageNodeProcess({
        zone,
        secret,
        controlUrl: base,
        env: { MAYFLY_HEARTBEAT_INTERVAL_MS: '250' },
        wrapper: straceWrapper(trace),
      })
      nodes.push({ process: node, trace })
    }
    await waitFor('the gateway ready with its three nodes', async () => {
      const res = await fetch(`${base}/ready`)
      await res.body?.cancel()
      return res.status === 200
    }, 30_000)
  })
  after(async () => {
    await gateway?.kill('SIGTERM')
    await Promise.all(nodes.map((n) => n.process.stop()))
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  const traceOf = async (path: string) => parseTrace(await readFile(path, 'utf8'))

  /** `a` ended before `b` began, by their places in their process's trace */
  function assertBefore(a: Syscall, b: Syscall, what: string): void {
    assert.ok(a.endLine < b.startLine, `${what}: line ${a.endLine + 1} (${a.name}) is not before line ${b.startLine + 1} (${b.name})`)
  }

  // one body written whole with one writev, one streamed in chunks (blob-writer.ts)
  for (const size of [100 * 1024, 3 * MiB]) {
    test(`a ${size} B upload is answered 201 only after a write quorum of nodes fsynced its file, renamed it, fsynced the directory and said 201`, async () => {
      const data = randomBytes(size)
      const { status, body } = await upload(base, data)
      assert.equal(status, 201, JSON.stringify(body))
      const id = String(body.id)
      assert.equal(body.sha256, sha256(data))

      // the gateway's side: its 201 to the client, and the nodes' 201s it had read by then
      const { answer, key, calls } = await waitFor("the gateway's 201 in its trace", async () => {
        const calls = await traceOf(gatewayTrace)
        const answer = sentCreated(calls, id)
        const key = keyOfCreated(calls, String(body.sha256))
        return answer !== undefined && key !== null ? { answer, key, calls } : undefined
      })
      const heard = answersHeard(calls, key, answer)
      assert.ok(heard.length >= writeQuorum, `the gateway had read ${heard.length} nodes' 201 for blob ${key} when it answered (write quorum ${writeQuorum})`)

      // each node's side: it said 201 only after the durable steps, in order
      // (every node stores the blob, factor 3 on 3 nodes; the third maybe after the client's 201)
      const commits = await waitFor(`the 201 for blob ${key} in the trace of every node`, async () => {
        const found: BlobCommit[] = []
        for (const node of nodes) {
          const commit = blobCommit(await traceOf(node.trace), node.process.dataDir, key)
          if (commit === null) return undefined
          found.push(commit)
        }
        return found
      })
      for (const [i, c] of commits.entries()) {
        const node = `node ${['a', 'b', 'c'][i]}`
        assertBefore(c.open, c.lastWrite, `${node}: the temp file is opened before it is written`)
        assertBefore(c.lastWrite, c.fileSync, `${node}: the file's fsync comes after its last write`)
        assertBefore(c.fileSync, c.close, `${node}: the file is fsynced before it is closed`)
        assertBefore(c.fileSync, c.rename, `${node}: the file's fsync ends before the rename`)
        assertBefore(c.rename, c.dirSync, `${node}: the directory's fsync comes after the rename`)
        assertBefore(c.dirSync, c.ack, `${node}: the 201 goes out after the directory's fsync`)
      }
    })
  }
})
