// Storage nodes among others: heartbeats to a control url, node-to-node copy,
// scrub, a damaged replica under the gateway's replicated reader, restart
// with the same data directory, a frozen node.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { open, readdir, readFile, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import { Agent } from 'undici'
import { createReplicatedBlobStore } from '../../src/cluster/blob-store.ts'
import { createNodeDirectory } from '../../src/cluster/node-directory.ts'
import { createBlobClient } from '../../src/adapters/storage-node/client.ts'
import type { BlobClient } from '../../src/ports.ts'
import { Conflict, NotFound, PeerFailed, Unavailable } from '../../src/core/errors.ts'
import { newId } from '../../src/core/ids.ts'
import type { NodeRecord } from '../../src/core/node.ts'
import { startHeartbeat } from '../../src/services/storage-node/heartbeat.ts'
import {
  BLOCK_BYTES,
  blobFilePath,
  flipBlobByte,
  startStorageNodeProcess,
  writeLegacyBlob,
  type StorageNodeProcess,
} from '../helpers/storage-node-process.ts'
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts'
import { readAll, sha256 as sha } from '../helpers/http.ts'
import { waitFor } from '../helpers/wait.ts'

const SECRET = `test-secret-${randomBytes(8).toString('hex')}`

/** A plain HTTP server that records who called it (and with which Authorization) and answers as `handle` says. */
async function startServer(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; requests: { url: string; auth: string | undefined }[]; close(): Promise<void> }> {
  const requests: { url: string; auth: string | undefined }[] = []
  const server: Server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', auth: req.headers.authorization })
    req.resume()
    handle(req, res)
  })
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((closed) => {
        server.closeAllConnections()
        server.close(() => closed())
      }),
  }
}

describe('storage nodes together', { timeout: 60_000 }, () => {
  let control: ControlPlane
  let a: StorageNodeProcess
  let b: StorageNodeProcess
  let client: BlobClient

  before(async () => {
    control = await startControlPlane(SECRET)
    const env = { MAYFLY_HEARTBEAT_INTERVAL_MS: '100', MAYFLY_NODE_TIMEOUT_MS: '1000' }
    ;[a, b] = await Promise.all([
      // a scrubs its few blobs every second
      startStorageNodeProcess({ zone: 'a', secret: SECRET, controlUrl: control.url, env: { ...env, MAYFLY_SCRUB_INTERVAL_SECONDS: '1' } }),
      // b beats too, so that it can look up the sources of its copies
      startStorageNodeProcess({ zone: 'b', secret: SECRET, controlUrl: control.url, env }),
    ])
    client = createBlobClient({ secret: SECRET, timeoutMs: 1000 })
  })
  after(async () => {
    await client?.close()
    await Promise.all([a?.stop(), b?.stop()])
    await control?.close()
  })

  test('heartbeats reach the control url with the secret and the node announcement', async () => {
    const key = newId()
    await client.put(a.url, key, Readable.from([Buffer.from('counted')]))
    // a later beat reports the new blob: heartbeats keep coming and carry fresh numbers
    const beat = await control.next((body) => body.id === a.id && body.blobCount >= 1)
    assert.deepEqual(
      { id: beat.id, zone: beat.zone, url: beat.url },
      { id: a.id, zone: 'a', url: a.url },
    )
    assert.ok(beat.capacityBytes > 0 && beat.freeBytes > 0 && beat.usedBytes >= 7)
    assert.equal(typeof beat.version, 'string')
    assert.ok(control.beats.every((x) => x.auth === `Bearer ${SECRET}`))
    assert.ok(control.beats.every((x) => x.body.id === a.id || x.body.id === b.id))
  })

  test('copy: a node fetches a blob from a peer it names by id, looked up with its control plane', async () => {
    control.register(a.id, a.url)
    const key = newId()
    const data = randomBytes(100_000)
    await client.put(a.url, key, Readable.from([data]))
    assert.deepEqual(await client.copy(b.url, key, a.id), { key, size: data.length, sha256: sha(data) })
    assert.ok((await readAll((await client.get(b.url, key)).body)).equals(data))
    await assert.rejects(client.copy(b.url, newId(), a.id), NotFound)
    assert.ok(control.lookups.some((l) => l.id === a.id && l.auth === `Bearer ${SECRET}`), 'b asked its control plane for a')
    assert.deepEqual(await readdir(join(b.dataDir, 'tmp')), [])
  })

  test('copy: only from a registered node that is not lost; the secret goes nowhere else (issue 7, bug 13)', async () => {
    // a server that is no storage node but answers like one: what it sends must never be stored
    const bait = Buffer.from('not from a storage node')
    const stranger = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-content-sha256': sha(bait), 'content-length': bait.length }).end(bait)
    })
    try {
      const key = newId()
      const copyWith = (body: unknown) =>
        fetch(`${b.url}/blobs/${key}/copy`, {
          method: 'POST',
          headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })
      // a url is no source: refused before anything is asked
      for (const source of [stranger.url, `${stranger.url}/`, 'http://127.0.0.1:1']) {
        const res = await copyWith({ source })
        assert.equal(res.status, 400, source)
        assert.equal(((await res.json()) as { error: string }).error, 'invalid_request')
      }
      // an id nobody registered, and a registered node that was declared lost: the same 409, nothing fetched
      control.register('node-lost', stranger.url)
      control.markLost('node-lost')
      const answers: string[] = []
      for (const id of ['node-unknown', 'node-lost']) {
        await assert.rejects(client.copy(b.url, key, id), (err: Error & { code?: string }) => {
          assert.ok(err instanceof Conflict, `${id}: ${err.name}`)
          assert.equal(err.code, 'unknown_source')
          answers.push(err.message.replaceAll(id, 'ID'))
          return true
        })
      }
      assert.equal(answers[0], answers[1], 'an unknown node and a lost one get the same answer')
      assert.deepEqual(stranger.requests, [], 'the stranger was never asked (nor told the secret)')
      await assert.rejects(client.head(b.url, key), NotFound)
    } finally {
      await stranger.close()
    }
  })

  test('copy: the target tells a failed source from its own failure (issue 7, bug 6)', async () => {
    const key = newId()
    await client.put(a.url, key, Readable.from([randomBytes(1000)]))
    const broken = await startServer((_req, res) => {
      res.writeHead(500).end()
    })
    try {
      control.register('node-refusing', 'http://127.0.0.1:1')
      control.register('node-broken', broken.url)
      for (const id of ['node-refusing', 'node-broken']) {
        await assert.rejects(client.copy(b.url, key, id), (err: Error & { code?: string }) => {
          assert.ok(err instanceof PeerFailed, `${id}: ${err.name}: ${err.message}`)
          assert.equal(err.code, 'peer_unavailable')
          return true
        })
      }
      assert.equal(broken.requests.length, 1)
      assert.equal(broken.requests[0]!.auth, `Bearer ${SECRET}`, 'a registered node gets the secret')
      // the target itself unreachable: that is no source's fault
      await assert.rejects(client.copy('http://127.0.0.1:1', key, a.id), (err: Error) => err instanceof Unavailable && !(err instanceof PeerFailed))
      await assert.rejects(client.head(b.url, key), NotFound)
    } finally {
      await broken.close()
    }
  })

  test('copy: a caller that hangs up ends the copy on the target, which keeps nothing (issue 7, bug 8)', async () => {
    // a target that would wait a minute for a stalled source
    const c = await startStorageNodeProcess({ zone: 'c', secret: SECRET, controlUrl: control.url, env: { MAYFLY_NODE_TIMEOUT_MS: '60000' } })
    let sourceClosed = false
    // sends 2 MiB of 8 (past the node's first whole-write gather, so a temp file exists), then stalls
    const slow = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-content-sha256': 'ab'.repeat(32), 'content-length': 8 * 1024 * 1024 })
      res.write(randomBytes(2 * 1024 * 1024))
      res.once('close', () => (sourceClosed = true))
    })
    try {
      control.register('node-slow', slow.url)
      const key = newId()
      const hangUp = new AbortController()
      const copying = client.copy(c.url, key, 'node-slow', { signal: hangUp.signal })
      copying.catch(() => undefined)
      await waitFor('the copy under way on the target', async () => (await readdir(join(c.dataDir, 'tmp'))).length > 0)
      hangUp.abort()
      await assert.rejects(copying, (err: Error) => err.name === 'AbortError')
      await waitFor('the target to let go of its source', () => sourceClosed)
      await waitFor('the temp file removed', async () => (await readdir(join(c.dataDir, 'tmp'))).length === 0)
      await assert.rejects(client.head(c.url, key), NotFound)
    } finally {
      await slow.close()
      await c.stop()
    }
  })

  const quarantined = (node: StorageNodeProcess, key: string) => async () => (await readdir(join(node.dataDir, 'quarantine'))).some((f) => f.startsWith(key))

  test('scrub finds a flipped byte on its own and quarantines the blob', async () => {
    const key = newId()
    await client.put(a.url, key, Readable.from([randomBytes(10_000)]))
    await flipBlobByte(a.dataDir, key, 9_999)
    await waitFor('the blob in quarantine on node a', quarantined(a, key))
    await assert.rejects(client.head(a.url, key), NotFound)
  })

  test('scrub also checks the sha256 on record', async () => {
    const key = newId()
    await client.put(a.url, key, Readable.from([randomBytes(3 * BLOCK_BYTES)]))
    // the blocks still match their CRC32s; only the whole-blob check can see this
    const fh = await open(blobFilePath(a.dataDir, key), 'r+')
    try {
      const digit = Buffer.alloc(1)
      await fh.read(digit, 0, 1, 'MAYFLYB2 '.length)
      await fh.write(Buffer.from(digit.toString() === '0' ? '1' : '0'), 0, 1, 'MAYFLYB2 '.length)
    } finally {
      await fh.close()
    }
    await waitFor('the blob in quarantine on node a', quarantined(a, key))
    // the node logs why after it moved the file: the line may trail the rename by a moment
    const why = new RegExp(`"key":"${key}","reason":"the bytes hash to [0-9a-f]{64}, not the recorded sha256`)
    await waitFor('the node to say why it quarantined the blob', () => why.test(a.output()), 5000)
  })

  test('scrub rewrites a blob of the format before block checksums (MAYFLYB1) with them', async () => {
    const key = newId()
    const data = randomBytes(2 * 1024 * 1024 + 3)
    await writeLegacyBlob(a.dataDir, key, data)
    await waitFor('the blob rewritten as MAYFLYB2', async () => (await readFile(blobFilePath(a.dataDir, key))).toString('latin1', 0, 8) === 'MAYFLYB2')
    assert.ok((await readAll((await client.get(a.url, key)).body)).equals(data))
    assert.deepEqual(await client.head(a.url, key), { key, size: data.length, sha256: sha(data) })
    assert.match(a.output(), /blob rewritten with block checksums/)
  })

  test("a damaged replica is cut off at the damaged block and the gateway's read resumes on another: right bytes, no error", async () => {
    const key = newId()
    const data = randomBytes(40 * BLOCK_BYTES + 999)
    for (const node of [a, b]) await client.put(node.url, key, Readable.from([data]))
    // b does not scrub: the damage is found by the read itself
    await flipBlobByte(b.dataDir, key, 30 * BLOCK_BYTES + 5)
    const lines: { msg: string; position?: number }[] = []
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string; position?: number }) })
    const record = (node: StorageNodeProcess, heartbeatAgoMs: number): NodeRecord => ({
      id: node.id, url: node.url, zone: node.id, version: '0', capacityBytes: 1, freeBytes: 1, usedBytes: 0, blobCount: 0,
      quarantined: 0, lastHeartbeat: new Date(Date.now() - heartbeatAgoMs), heartbeatAgeMs: heartbeatAgoMs, draining: false, lostAt: null,
    })
    // a is suspect, so the read starts on b (the damaged copy)
    const nodes = createNodeDirectory({ listNodes: async () => [record(a, 60_000), record(b, 0)], timings: { suspectAfterMs: 30_000, downAfterMs: 600_000 } })
    const store = createReplicatedBlobStore({ client, nodes, replicationFactor: 2, writeQuorum: 2, placement: 'zones', stallTimeoutMs: 1000, log })
    const got = await readAll(await store.open({ key, size: data.length, sha256: sha(data) }, [a.id, b.id]))
    assert.ok(got.equals(data))
    const resumed = lines.find((l) => l.msg.includes('resuming from the next one'))
    assert.ok(resumed !== undefined, 'the read moved to a mid-stream')
    assert.ok(resumed.position !== undefined && resumed.position > 0 && resumed.position <= 30 * BLOCK_BYTES, `resumed at ${resumed.position}`)
    await waitFor('the blob in quarantine on node b', quarantined(b, key))
  })

  test('a frozen node (SIGSTOP) fails calls within the timeout', async () => {
    const key = newId()
    await client.put(b.url, key, Readable.from([Buffer.from('frozen')]))
    await b.kill('SIGSTOP')
    try {
      const started = Date.now()
      await assert.rejects(client.get(b.url, key), (err: Error & { code?: string }) => err.code === 'node_unavailable')
      await assert.rejects(client.put(b.url, newId(), Readable.from([randomBytes(4 * 1024 * 1024)])), Unavailable)
      assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`)
    } finally {
      await b.kill('SIGCONT')
    }
    assert.equal((await client.head(b.url, key)).size, 6)
  })

  test('a restarted node keeps its id and blobs and drops half-written uploads', async () => {
    const key = newId()
    const data = randomBytes(5000)
    await client.put(a.url, key, Readable.from([data]))
    const { id, dataDir } = a
    await a.kill('SIGKILL')
    await writeFile(join(dataDir, 'tmp', `${newId()}.0123.part`), 'half an upload')
    a = await startStorageNodeProcess({ zone: 'a', secret: SECRET, dataDir })
    assert.equal(a.id, id)
    assert.ok((await readAll((await client.get(a.url, key)).body)).equals(data))
    assert.deepEqual(await readdir(join(dataDir, 'tmp')), [])
    const health = await client.health(a.url)
    assert.equal(health.id, id)
    assert.ok(health.blobCount >= 3)
  })
})

test('an unreachable control plane is logged once per outage and the beats go on', { timeout: 20_000 }, async () => {
  const lines: { level: number; msg: string }[] = []
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) })
  let calls = 0
  let reached: () => void = () => undefined
  const enough = new Promise<void>((done) => (reached = done))
  // answers 500 to beats 2..5, then recovers
  const server = createServer((req, res) => {
    calls++
    req.resume()
    res.writeHead(calls >= 2 && calls <= 5 ? 500 : 204).end()
    if (calls === 8) reached()
  })
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  const dispatcher = new Agent()
  const announcement = { id: 'node-x', url: 'http://x', zone: 'z', version: '0', capacityBytes: 1, freeBytes: 1, usedBytes: 0, blobCount: 0, quarantined: 0 }
  const beat = startHeartbeat({
    controlUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    secret: SECRET,
    intervalMs: 50,
    timeoutMs: 1000,
    dispatcher,
    describe: async () => announcement,
    log,
  })
  try {
    await enough
  } finally {
    await beat.stop()
    await dispatcher.close()
    server.close()
  }
  assert.equal(lines.filter((l) => l.level === 40).length, 1, 'one warning for the outage')
  assert.equal(lines.filter((l) => l.msg.includes('again')).length, 1, 'one line for the recovery')
})
