// One real storage node process: auth, keys, PUT/GET/HEAD/DELETE, checksums,
// ranges, inventory, corruption on disk (block by block), blobs in the format
// before block checksums, and uploads that abort or stall.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { crc32 } from 'node:zlib'
import { createBlobClient } from '../../src/adapters/storage-node/client.ts'
import type { BlobClient } from '../../src/ports.ts'
import { ChecksumMismatch, Invalid, LeaseLost, NotFound, Unauthorized } from '../../src/core/errors.ts'
import { newId } from '../../src/core/ids.ts'
import {
  BLOB_HEADER_BYTES,
  BLOCK_BYTES,
  blobFilePath,
  flipBlobByte,
  flipBlockTableByte,
  startStorageNodeProcess,
  writeLegacyBlob,
  type StorageNodeProcess,
} from '../helpers/storage-node-process.ts'
import { startControlPlane } from '../helpers/control-plane.ts'
import { readAll, sha256 as sha } from '../helpers/http.ts'
import { waitFor } from '../helpers/wait.ts'

const SECRET = `test-secret-${randomBytes(8).toString('hex')}`

/** What a GET gave before it ended or was cut off: the status, the body bytes that came, and whether the body was complete. */
interface RawAnswer {
  status: number
  body: Buffer
  complete: boolean
}

function rawGet(url: string, headers: Record<string, string>): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers })
    req.once('error', reject)
    req.once('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      const done = () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), complete: res.complete })
      res.once('end', done)
      res.once('error', done)
      res.once('close', done)
    })
    req.end()
  })
}

describe('storage node', { timeout: 60_000 }, () => {
  let node: StorageNodeProcess
  let client: BlobClient
  const tmpFiles = () => readdir(join(node.dataDir, 'tmp'))
  const auth = () => ({ authorization: `Bearer ${SECRET}` })
  const get = (key: string, range?: string) => rawGet(`${node.url}/blobs/${key}`, range === undefined ? auth() : { ...auth(), range })
  const quarantined = async (key: string) => (await readdir(join(node.dataDir, 'quarantine'))).some((f) => f.startsWith(key))
  /** a blob of `blocks` full blocks and a bit, stored on the node */
  async function putBlocks(blocks: number): Promise<{ key: string; data: Buffer }> {
    const key = newId()
    const data = randomBytes(blocks * BLOCK_BYTES + 1234)
    await client.put(node.url, key, Readable.from([data]))
    return { key, data }
  }

  before(async () => {
    node = await startStorageNodeProcess({ zone: 'a', secret: SECRET, env: { MAYFLY_CLIENT_TIMEOUT_MS: '500' } })
    client = createBlobClient({ secret: SECRET, timeoutMs: 5000 })
  })
  after(async () => {
    await client?.close()
    await node?.stop()
  })

  test('health answers without auth', async () => {
    const res = await fetch(`${node.url}/health`)
    assert.equal(res.status, 200)
    const h = (await res.json()) as Record<string, unknown>
    assert.equal(h.id, node.id)
    assert.match(String(h.id), /^node-[0-9a-f]{12}$/)
    assert.equal(h.zone, 'a')
    assert.equal(h.url, node.url)
    assert.equal(typeof h.version, 'string')
    for (const f of ['capacityBytes', 'freeBytes', 'usedBytes', 'blobCount']) assert.equal(typeof h[f], 'number', f)
  })

  test('every other call needs the cluster secret', async () => {
    const key = newId()
    for (const headers of [{}, { authorization: 'Bearer wrong-secret-of-some-length' }, { authorization: SECRET }]) {
      const res = await fetch(`${node.url}/blobs/${key}`, { headers })
      assert.equal(res.status, 401)
      assert.equal(((await res.json()) as { error: string }).error, 'unauthorized')
    }
    const res = await fetch(`${node.url}/blobs`, { method: 'PUT', body: 'x' })
    assert.equal(res.status, 401)
    await res.body?.cancel()
    const stranger = createBlobClient({ secret: 'not-the-cluster-secret', timeoutMs: 2000 })
    try {
      await assert.rejects(stranger.head(node.url, key), Unauthorized)
      await assert.rejects(stranger.put(node.url, key, Readable.from([Buffer.from('x')])), Unauthorized)
    } finally {
      await stranger.close()
    }
  })

  test('malformed keys are 404 and touch nothing', async () => {
    const auth = { authorization: `Bearer ${SECRET}` }
    for (const key of ['short', '..%2F..%2Fnode-id', '%2E%2E', `${newId()}x`, 'a'.repeat(21) + '.']) {
      const put = await fetch(`${node.url}/blobs/${key}`, { method: 'PUT', headers: auth, body: 'data' })
      assert.equal(put.status, 404, key)
      assert.equal(((await put.json()) as { error: string }).error, 'not_found')
      const get = await fetch(`${node.url}/blobs/${key}`, { headers: auth })
      assert.equal(get.status, 404, key)
      await get.body?.cancel()
    }
    assert.deepEqual(await tmpFiles(), [])
  })

  test('PUT then GET returns the same bytes and sha256; a replace is atomic', async () => {
    const key = newId()
    const data = randomBytes(300_000)
    const put = await client.put(node.url, key, Readable.from([data.subarray(0, 1000), data.subarray(1000)]), { sha256: sha(data) })
    assert.deepEqual(put, { key, size: data.length, sha256: sha(data) })
    const got = await client.get(node.url, key)
    assert.equal(got.partial, false)
    assert.equal(got.size, data.length)
    assert.equal(got.totalSize, data.length)
    assert.equal(got.sha256, sha(data))
    assert.ok((await readAll(got.body)).equals(data))

    const raw = await fetch(`${node.url}/blobs/${key}`, { headers: { authorization: `Bearer ${SECRET}` } })
    assert.equal(raw.headers.get('etag'), `"${sha(data)}"`)
    assert.equal(raw.headers.get('accept-ranges'), 'bytes')
    assert.equal(raw.headers.get('content-length'), String(data.length))
    await raw.body?.cancel()

    const other = Buffer.from('replacement')
    await client.put(node.url, key, Readable.from([other]), { size: other.length })
    assert.ok((await readAll((await client.get(node.url, key)).body)).equals(other))

    const empty = newId()
    assert.equal((await client.put(node.url, empty, Readable.from([]))).sha256, sha(Buffer.alloc(0)))
    const e = await client.get(node.url, empty)
    assert.equal(e.size, 0)
    assert.equal((await readAll(e.body)).length, 0)
  })

  test('a sha256 mismatch is 422 and keeps nothing', async () => {
    const key = newId()
    await assert.rejects(client.put(node.url, key, Readable.from([randomBytes(5000)]), { sha256: sha(Buffer.from('other')) }), ChecksumMismatch)
    await assert.rejects(client.head(node.url, key), NotFound)
    assert.deepEqual(await tmpFiles(), [])
    await assert.rejects(client.get(node.url, newId()), NotFound)
  })

  test('Range reads: a-b, a-, -n, clamped end; 416 past the end', async () => {
    const key = newId()
    const data = randomBytes(1000)
    await client.put(node.url, key, Readable.from([data]))
    const cases: [number, number, Buffer][] = [
      [0, 0, data.subarray(0, 1)],
      [10, 19, data.subarray(10, 20)],
      [990, 5000, data.subarray(990)],
    ]
    for (const [start, end, want] of cases) {
      const r = await client.get(node.url, key, { range: { start, end } })
      assert.equal(r.partial, true)
      assert.equal(r.totalSize, 1000)
      assert.equal(r.size, want.length)
      assert.ok((await readAll(r.body)).equals(want), `${start}-${end}`)
    }
    const auth = { authorization: `Bearer ${SECRET}` }
    const suffix = await fetch(`${node.url}/blobs/${key}`, { headers: { ...auth, range: 'bytes=-100' } })
    assert.equal(suffix.status, 206)
    assert.equal(suffix.headers.get('content-range'), 'bytes 900-999/1000')
    assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(data.subarray(900)))
    const open = await fetch(`${node.url}/blobs/${key}`, { headers: { ...auth, range: 'bytes=500-' } })
    assert.equal(open.headers.get('content-range'), 'bytes 500-999/1000')
    assert.ok(Buffer.from(await open.arrayBuffer()).equals(data.subarray(500)))

    const bad = await fetch(`${node.url}/blobs/${key}`, { headers: { ...auth, range: 'bytes=1000-1001' } })
    assert.equal(bad.status, 416)
    assert.equal(bad.headers.get('content-range'), 'bytes */1000')
    await bad.body?.cancel()
    await assert.rejects(client.get(node.url, key, { range: { start: 2000, end: 3000 } }), Invalid)
  })

  test('HEAD gives size and sha256; DELETE is idempotent', async () => {
    const key = newId()
    const data = randomBytes(777)
    await client.put(node.url, key, Readable.from([data]))
    assert.deepEqual(await client.head(node.url, key), { key, size: 777, sha256: sha(data) })
    const raw = await fetch(`${node.url}/blobs/${key}`, { method: 'HEAD', headers: { authorization: `Bearer ${SECRET}` } })
    assert.equal(raw.status, 200)
    assert.equal(raw.headers.get('content-length'), '777')
    assert.equal(raw.headers.get('x-content-sha256'), sha(data))
    await client.delete(node.url, key)
    await client.delete(node.url, key)
    await assert.rejects(client.head(node.url, key), NotFound)
  })

  test('inventory pages in key order', async () => {
    const before = await client.health(node.url)
    const keys = Array.from({ length: 5 }, () => newId())
    for (const key of keys) await client.put(node.url, key, Readable.from([Buffer.from(key)]))
    const seen: string[] = []
    let after: string | undefined
    for (let pages = 0; pages < 100; pages++) {
      const page = await client.list(node.url, { after, limit: 2 })
      assert.ok(page.blobs.length <= 2)
      for (const b of page.blobs) {
        seen.push(b.key)
        if (keys.includes(b.key)) assert.deepEqual(b, { key: b.key, size: 22, sha256: sha(Buffer.from(b.key)) })
      }
      if (page.next === null) break
      after = page.next
    }
    assert.deepEqual(seen, [...seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
    for (const key of keys) assert.ok(seen.includes(key))
    assert.equal(seen.length, before.blobCount + 5)
    assert.equal((await client.health(node.url)).blobCount, before.blobCount + 5)
    await assert.rejects(client.list(node.url, { limit: 10001 }), Invalid)
    await assert.rejects(client.list(node.url, { after: '../x' }), Invalid)
  })

  test('the blob file holds a header, the bytes and a CRC32 of every 64 KiB block', async () => {
    const { key, data } = await putBlocks(3)
    const file = await readFile(blobFilePath(node.dataDir, key))
    assert.equal(file.toString('latin1', 0, 9), 'MAYFLYB2 ')
    assert.ok(file.subarray(BLOB_HEADER_BYTES, BLOB_HEADER_BYTES + data.length).equals(data))
    const table = file.subarray(BLOB_HEADER_BYTES + data.length)
    assert.equal(table.length, 4 * 4)
    for (let i = 0; i < 4; i++) assert.equal(table.readUInt32BE(4 * i), crc32(data.subarray(i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES)), `block ${i}`)
  })

  test('a byte flipped in a block: a GET stops before that block, never sending a wrong byte, and quarantines the blob', async () => {
    // 49 blocks, more than one read: the damage is found mid-stream, after the 200 and many bytes went out
    const { key, data } = await putBlocks(48)
    const bad = 40
    await flipBlobByte(node.dataDir, key, bad * BLOCK_BYTES + 100)
    // ranges that do not touch the damaged block are served, before and after it
    for (const [start, end] of [[0, 99], [0, bad * BLOCK_BYTES - 1], [(bad + 1) * BLOCK_BYTES, data.length - 1], [bad * BLOCK_BYTES - 10, bad * BLOCK_BYTES - 1]] as const) {
      const part = await get(key, `bytes=${start}-${end}`)
      assert.equal(part.status, 206)
      assert.ok(part.complete, `${start}-${end}`)
      assert.ok(part.body.equals(data.subarray(start, end + 1)), `${start}-${end}`)
    }
    const whole = await get(key)
    assert.equal(whole.status, 200)
    assert.equal(whole.complete, false, 'the body is cut off, never ended cleanly')
    assert.ok(whole.body.length <= bad * BLOCK_BYTES, `${whole.body.length} bytes came, past the damaged block`)
    assert.ok(whole.body.equals(data.subarray(0, whole.body.length)), 'what came is the start of the blob')
    await waitFor('the blob in quarantine', () => quarantined(key))
    assert.ok(!(await readdir(dirname(blobFilePath(node.dataDir, key)))).includes(key))
    await assert.rejects(client.get(node.url, key), NotFound)
    assert.match(node.output(), new RegExp(`"key":"${key}","reason":"block ${bad} \\(blob bytes ${bad * BLOCK_BYTES}-${(bad + 1) * BLOCK_BYTES - 1}\\) fails its CRC32".*blob quarantined`))
  })

  test('a range that runs into a damaged block is cut off before it; one that starts in it is a 404', async () => {
    const first = await putBlocks(8)
    await flipBlobByte(node.dataDir, first.key, 5 * BLOCK_BYTES + 7)
    const start = 2 * BLOCK_BYTES + 3
    const cut = await get(first.key, `bytes=${start}-${7 * BLOCK_BYTES}`)
    assert.equal(cut.status, 206)
    assert.equal(cut.complete, false)
    assert.ok(cut.body.length <= 5 * BLOCK_BYTES - start)
    assert.ok(cut.body.equals(first.data.subarray(start, start + cut.body.length)))
    await waitFor('the first blob in quarantine', () => quarantined(first.key))

    // damage before the first byte asked for: an error status, no body at all
    const second = await putBlocks(8)
    await flipBlobByte(node.dataDir, second.key, 5 * BLOCK_BYTES + 7)
    const res = await fetch(`${node.url}/blobs/${second.key}`, { headers: { ...auth(), range: `bytes=${5 * BLOCK_BYTES + 10}-` } })
    assert.equal(res.status, 404)
    assert.equal(((await res.json()) as { error: string }).error, 'blob_damaged')
    assert.ok(await quarantined(second.key), 'quarantined before the answer')
    await assert.rejects(client.head(node.url, second.key), NotFound)

    // a small blob (one read) damaged anywhere: 404, through the client too
    const small = newId()
    await client.put(node.url, small, Readable.from([randomBytes(4096)]))
    await flipBlobByte(node.dataDir, small, 4095)
    await assert.rejects(client.get(node.url, small), NotFound)
  })

  test('a damaged block table entry fails its block too', async () => {
    const { key, data } = await putBlocks(2)
    await flipBlockTableByte(node.dataDir, key, 1)
    const part = await get(key, `bytes=0-${BLOCK_BYTES - 1}`)
    assert.ok(part.complete && part.body.equals(data.subarray(0, BLOCK_BYTES)))
    const whole = await get(key)
    assert.equal(whole.complete, false)
    assert.ok(whole.body.length <= BLOCK_BYTES && whole.body.equals(data.subarray(0, whole.body.length)))
    await waitFor('the blob in quarantine', () => quarantined(key))
  })

  test('an upload that aborts or stalls leaves no temp file', async () => {
    const auth = `Bearer ${SECRET}`
    for (const mode of ['abort', 'stall'] as const) {
      const key = newId()
      // larger than what a node gathers in memory before writing, so a temp file exists mid-upload
      const req = httpRequest(`${node.url}/blobs/${key}`, { method: 'PUT', headers: { authorization: auth, 'content-length': '3000000' } })
      const closed = new Promise<void>((done) => req.once('close', () => done()))
      req.on('error', () => undefined)
      req.write(randomBytes(1_500_000))
      await waitFor("the upload's temp file", async () => (await tmpFiles()).length === 1)
      if (mode === 'abort') req.destroy()
      // stall: the node cuts the client off after MAYFLY_CLIENT_TIMEOUT_MS (500 ms)
      await closed
      await waitFor('the temp file to go', async () => (await tmpFiles()).length === 0)
      await assert.rejects(client.head(node.url, key), NotFound)
    }
  })
  test('a blob in the format before block checksums (MAYFLYB1) is still served and checked by its sha256', async () => {
    const key = newId()
    const data = randomBytes(3 * 1024 * 1024 + 5)
    await writeLegacyBlob(node.dataDir, key, data)
    assert.deepEqual(await client.head(node.url, key), { key, size: data.length, sha256: sha(data) })
    assert.ok((await readAll((await client.get(node.url, key)).body)).equals(data))
    const part = await client.get(node.url, key, { range: { start: 1_000_000, end: 2_500_000 } })
    assert.ok((await readAll(part.body)).equals(data.subarray(1_000_000, 2_500_001)))

    // damaged: a whole read is cut off before its last bytes
    await flipBlobByte(node.dataDir, key, data.length - 1)
    const whole = await get(key)
    assert.equal(whole.complete, false)
    assert.ok(whole.body.length < data.length && whole.body.equals(data.subarray(0, whole.body.length)))
    await waitFor('the blob in quarantine', () => quarantined(key))
  })

  test('a reader that stops reading is cut off', async () => {
    const key = newId()
    await client.put(node.url, key, Readable.from([Buffer.alloc(8 * 1024 * 1024)]))
    const req = httpRequest(`${node.url}/blobs/${key}`, { headers: { authorization: `Bearer ${SECRET}` } })
    req.on('error', () => undefined)
    const res = await new Promise<IncomingMessage>((done) => req.once('response', done).end())
    assert.equal(res.statusCode, 200)
    res.pause() // the node fills the socket, then waits; after MAYFLY_CLIENT_TIMEOUT_MS it gives up
    res.on('error', () => undefined)
    await waitFor('the node to log the connection cut', async () => node.output().includes('connection cut'))
    // a paused reader sees the end only when it reads on: the body stops short
    await assert.rejects(readAll(res))
    assert.equal(res.complete, false)
  })
})

test('a client call fails fast when the node is unreachable', async () => {
  const client = createBlobClient({ secret: SECRET, timeoutMs: 1000 })
  try {
    await assert.rejects(client.head('http://127.0.0.1:1', newId()), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'node_unavailable')
      assert.match(err.message, /127\.0\.0\.1:1/)
      return true
    })
  } finally {
    await client.close()
  }
})

test('fencing: a delete or copy carrying a superseded lease token is refused (409 fenced), also after a restart', { timeout: 60_000 }, async () => {
  // the node looks the source of a copy up with its control plane
  const control = await startControlPlane(SECRET)
  const first = await startStorageNodeProcess({ zone: 'a', secret: SECRET, controlUrl: control.url })
  const peer = await startStorageNodeProcess({ zone: 'b', secret: SECRET })
  control.register(peer.id, peer.url)
  const client = createBlobClient({ secret: SECRET, timeoutMs: 5000 })
  let node = first
  try {
    const lease = 'ns-x:replicator'
    const [gone, kept, copied] = [newId(), newId(), newId()]
    for (const key of [gone, kept]) await client.put(node.url, key, Readable.from([randomBytes(1000)]))
    await client.put(peer.url, copied, Readable.from([randomBytes(2000)]))

    await client.delete(node.url, gone, { fence: { name: lease, token: 5 } })
    await assert.rejects(client.head(node.url, gone), NotFound)
    await assert.rejects(client.delete(node.url, kept, { fence: { name: lease, token: 4 } }), LeaseLost)
    await assert.rejects(client.copy(node.url, copied, peer.id, { fence: { name: lease, token: 4 } }), LeaseLost)
    assert.equal((await client.head(node.url, kept)).size, 1000, 'the refused delete deleted nothing')
    await assert.rejects(client.head(node.url, copied), NotFound, 'the refused copy copied nothing')
    // another lease is fenced on its own; calls without a fence (gateways, workers) are not fenced
    await client.put(node.url, gone, Readable.from([randomBytes(10)]))
    await client.delete(node.url, gone, { fence: { name: 'other:replicator', token: 1 } })
    await client.put(node.url, gone, Readable.from([randomBytes(10)]))
    await client.delete(node.url, gone)
    const malformed = await fetch(`${node.url}/blobs/${kept}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${SECRET}`, 'x-mayfly-fence': 'no-token' },
    })
    assert.equal(malformed.status, 400)
    await malformed.body?.cancel()

    // the highest token survives a restart
    await node.stop()
    node = await startStorageNodeProcess({ zone: 'a', secret: SECRET, dataDir: first.dataDir, controlUrl: control.url })
    await assert.rejects(client.delete(node.url, kept, { fence: { name: lease, token: 4 } }), LeaseLost)
    assert.equal((await client.head(node.url, kept)).size, 1000)
    assert.equal((await client.copy(node.url, copied, peer.id, { fence: { name: lease, token: 6 } })).size, 2000)
    await assert.rejects(client.delete(node.url, copied, { fence: { name: lease, token: 5 } }), LeaseLost)
  } finally {
    await client.close()
    await node.stop()
    await peer.stop()
    await control.close()
  }
})
