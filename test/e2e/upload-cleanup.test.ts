// What a failed upload leaves behind (issue 7, bugs 5 and 15): nothing. One
// cleanup per failed upload, which waits for the copy still on its way, and
// no copy deleted twice; the streamed too-large branch (no Content-Length);
// a client that hangs up mid-upload is one warn in the log. The gateway runs
// in this process (inject(), and a real socket where a disconnect is needed),
// its storage nodes too; the blob store's calls to them are watched.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect } from 'node:net'
import { PassThrough, Readable, Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import { Unavailable } from '../../src/core/errors.ts'
import type { BlobClient } from '../../src/ports.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway-app.ts'
import { waitFor } from '../helpers/wait.ts'

const MiB = 1024 * 1024
const MAX_UPLOAD = 3 * MiB

/** A form with one file of `size` bytes, sent chunked in 64 KiB pieces as a client streams it: no Content-Length. */
function streamedForm(size: number): { payload: Readable; headers: Record<string, string> } {
  const boundary = 'streamed'
  async function* body() {
    yield Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="big.bin"\r\ncontent-type: application/octet-stream\r\n\r\n`)
    for (let sent = 0; sent < size; sent += 64 * 1024) yield Buffer.alloc(Math.min(64 * 1024, size - sent), 7)
    yield Buffer.from(`\r\n--${boundary}--\r\n`)
  }
  return {
    payload: Readable.from(body()),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
  }
}

interface Call {
  url: string
  key: string
}

describe('a failed upload leaves nothing behind', { timeout: 180_000 }, () => {
  let gw: TestGateway
  let base: string
  const logLines: { level: number; msg: string }[] = []
  const puts: (Call & { settled: boolean })[] = []
  const deletes: (Call & { settled: boolean })[] = []
  /** fault hooks, set by one test at a time */
  const hooks: { beforePut?: (call: Call) => Promise<void>; failDelete?: (call: Call) => boolean } = {}

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line !== '') logLines.push(JSON.parse(line) as { level: number; msg: string })
        done()
      },
    })
    gw = await startTestGateway({
      env: { MAYFLY_MAX_UPLOAD_BYTES: String(MAX_UPLOAD) },
      log: pino({ level: 'info' }, sink),
      wrapClient: (client): BlobClient => ({
        ...client,
        async put(url, key, body, options) {
          const call = { url, key, settled: false }
          puts.push(call)
          try {
            await hooks.beforePut?.(call)
            return await client.put(url, key, body, options)
          } finally {
            call.settled = true
          }
        },
        async delete(url, key, options) {
          const call = { url, key, settled: false }
          deletes.push(call)
          try {
            if (hooks.failDelete?.(call) === true) throw new Unavailable(`storage node ${url} unavailable (test)`, 'node_unavailable')
            return await client.delete(url, key, options)
          } finally {
            call.settled = true
          }
        },
      }),
    })
    await gw.app.listen({ host: '127.0.0.1', port: 0 })
    const address = gw.app.server.address()
    base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  })
  after(() => gw?.close())

  const isPending = async (key: string) => (await gw.metadata.replication.describeBlobs([key])).get(key)?.kind === 'pending'
  const copiesOf = async (key: string) => (await gw.disk()).blobs.filter((k) => k === key).length
  const deletesPerNode = (key: string) => gw.nodes.map((n) => deletes.filter((d) => d.key === key && d.url === n.url).length)
  /** the key of the next upload, once its file part reached the blob store */
  const nextKey = (from: number) => waitFor('the file part to reach the nodes', () => puts[from]?.key)
  /** the cleanup is over: the pending record is gone and no copy or temp file is left */
  const cleanedUp = (key: string) =>
    waitFor('the failed upload cleaned up', async () => !(await isPending(key)) && (await copiesOf(key)) === 0 && (await gw.disk()).temp.length === 0)

  test('a streamed upload (no Content-Length) past the limit: 413, its copies removed once each, its pending record abandoned', async () => {
    const from = puts.length
    const res = await gw.app.inject({ method: 'POST', url: '/api/upload', ...streamedForm(MAX_UPLOAD + 2 * MiB) })
    assert.deepEqual([res.statusCode, res.json().error], [413, 'too_large'])
    const key = await nextKey(from)
    assert.equal(puts.filter((p) => p.key === key).length, 3, 'bytes had gone to every node')
    await cleanedUp(key)
    assert.deepEqual(deletesPerNode(key), [1, 1, 1], 'each node is asked once')
  })

  test('a bad field after the stored file: the one cleanup waits for the copy still on its way, then removes all three', async () => {
    for (const [field, value, code] of [['max_downloads', '0', 'invalid_field'], ['colour', 'blue', 'unknown_field']] as const) {
      const from = puts.length
      const slow = gw.nodes[2]!.url
      let open!: () => void
      const gate = new Promise<void>((resolve) => (open = resolve))
      hooks.beforePut = ({ url }) => (url === slow ? gate : Promise.resolve())
      try {
        const boundary = 'late-field'
        const body = new PassThrough()
        const headers = { 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' }
        const answer = gw.app.inject({ method: 'POST', url: '/api/upload', payload: body, headers })
        body.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n${'a'.repeat(100_000)}\r\n--${boundary}`)
        const key = await nextKey(from)
        // the write quorum has the file (the third copy waits at the gate) before the bad field arrives
        await waitFor('two copies stored', () => puts.filter((p) => p.key === key && p.settled).length === 2)
        body.end(`\r\nContent-Disposition: form-data; name="${field}"\r\n\r\n${value}\r\n--${boundary}--\r\n`)
        const res = await answer
        assert.deepEqual([res.statusCode, res.json().error], [400, code])
        // The third copy lands only now: after a cleanup that does not wait
        // for it has had its chance (its deletes answered, or 2 s without).
        await waitFor('a cleanup that does not wait', () => deletes.filter((d) => d.key === key && d.settled).length >= 3, 2000).catch(() => {})
        open()
        await cleanedUp(key)
        assert.deepEqual(deletesPerNode(key), [1, 1, 1], `${field}: one cleanup, each node asked once`)
      } finally {
        open()
        delete hooks.beforePut
      }
    }
  })

  test('a client that hangs up mid-upload: one warn in the log, nothing at error, nothing left', async () => {
    const from = puts.length
    const linesFrom = logLines.length
    const socket = connect(Number(new URL(base).port), '127.0.0.1')
    socket.on('error', () => {})
    const boundary = 'gone'
    const head = `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="gone.bin"\r\ncontent-type: application/octet-stream\r\n\r\n`
    const sent = 2.5 * MiB
    socket.write(
      `POST /api/upload HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: multipart/form-data; boundary=${boundary}\r\n` +
        `content-length: ${head.length + sent + 100_000}\r\n\r\n${head}${'g'.repeat(sent)}`,
    )
    const key = await nextKey(from)
    await waitFor('every node to get the upload', () => puts.filter((p) => p.key === key).length === 3)
    socket.destroy()
    await once(socket, 'close')
    await cleanedUp(key)
    const loud = logLines.slice(linesFrom).filter((l) => l.level >= 40)
    assert.deepEqual(loud.map((l) => l.level), [40], JSON.stringify(loud))
    assert.match(loud[0]!.msg, /client went away/)
  })

  test('a node that cannot confirm the removal keeps the pending record, for the sweeper', async () => {
    const from = puts.length
    const linesFrom = logLines.length
    const stuck = gw.nodes[0]!.url
    hooks.failDelete = ({ url }) => url === stuck
    try {
      const res = await gw.app.inject({ method: 'POST', url: '/api/upload', ...streamedForm(MAX_UPLOAD + MiB) })
      assert.equal(res.statusCode, 413)
      const key = await nextKey(from)
      await waitFor('the cleanup to give up on the node', () => logLines.slice(linesFrom).some((l) => /the sweeper removes it/.test(l.msg)))
      assert.equal(await isPending(key), true)
      assert.deepEqual(deletesPerNode(key), [1, 1, 1])
    } finally {
      delete hooks.failDelete
    }
  })
})
