// `mayfly up` stops in order (issue 7, bug 8): on SIGTERM the gateway stops
// accepting first and lets the requests in flight finish (a stalled one is cut
// after a grace), then the replication manager and the worker stop, then the
// storage nodes, and the embedded PGlite store closes last. Under a little
// traffic: every request the gateway accepted succeeds (before the fix, the
// nodes went first and accepted requests failed with 503), a download and an
// upload in flight at the signal complete, `up` exits 0 (before the fix, a
// stalled client held the shutdown past its deadline and PGlite was never
// closed), PGlite's control file says it was shut down, and the same data
// dir starts again and serves every acknowledged file.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { connect } from 'node:net'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { downloadHash, MiB, uploadGenerated } from '../helpers/generated-upload.ts'
import { getJson, sha256, waitFor } from '../helpers/http.ts'
import { childPids, freePorts, isAlive, spawnMayfly, type MayflyProcess } from '../helpers/mayfly-process.ts'

/** PostgreSQL's DBState in global/pg_control (after system_identifier and two version words) */
const DB_STATE_OFFSET = 16
const DB_SHUTDOWNED = 1

type Outcome = { kind: 'ok' } | { kind: 'refused' } | { kind: 'failed'; what: string }

/**
 * One request on a connection of its own (as a client behind a load balancer
 * would see it): refused when the gateway no longer accepts it (no
 * connection, or Fastify's 503 for a request that raced its close), else the
 * answer.
 */
function call(url: string, method: string, body?: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer } | 'refused'> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false, headers: { connection: 'close', ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        if (!res.complete) return reject(new Error(`${method} ${url}: the answer was cut`))
        const data = Buffer.concat(chunks)
        // Fastify's answer to a request that arrived while it was closing: not accepted
        if (res.statusCode === 503 && data.toString().includes('"error":"Service Unavailable"')) return resolve('refused')
        resolve({ status: res.statusCode ?? 0, body: data })
      })
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      // nothing came back: the connection was refused, or reset before the gateway took the request
      if (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET') resolve('refused')
      else reject(err)
    })
    req.end(body)
  })
}

function multipart(data: Buffer): { body: Buffer; type: string } {
  const boundary = `----shutdown-${randomBytes(8).toString('hex')}`
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`
  return { body: Buffer.concat([Buffer.from(head), data, Buffer.from(`\r\n--${boundary}--\r\n`)]), type: `multipart/form-data; boundary=${boundary}` }
}

/** A client that downloads a known file and uploads small ones until the gateway refuses it. */
async function client(base: string, known: { id: string; sha: string }, acked: Map<string, string>, outcomes: Outcome[]): Promise<void> {
  for (let i = 0; ; i++) {
    let outcome: Outcome
    try {
      if (i % 2 === 0) {
        const got = await call(`${base}/api/download/${known.id}`, 'GET')
        outcome = got === 'refused' ? { kind: 'refused' }
          : got.status === 200 && sha256(got.body) === known.sha ? { kind: 'ok' }
          : { kind: 'failed', what: `download: ${got.status} ${got.body.subarray(0, 200).toString()}` }
      } else {
        const data = randomBytes(64 * 1024 + i)
        const form = multipart(data)
        const got = await call(`${base}/api/upload`, 'POST', form.body, { 'content-type': form.type })
        if (got !== 'refused' && got.status === 201) acked.set(String(JSON.parse(got.body.toString()).id), sha256(data))
        outcome = got === 'refused' ? { kind: 'refused' }
          : got.status === 201 ? { kind: 'ok' }
          : { kind: 'failed', what: `upload: ${got.status} ${got.body.subarray(0, 200).toString()}` }
      }
    } catch (err) {
      outcome = { kind: 'failed', what: (err as Error).message }
    }
    outcomes.push(outcome)
    if (outcome.kind === 'refused') return
  }
}

/** true once a new TCP connection to the port is refused */
function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'))
  })
}

async function pgliteState(dataDir: string): Promise<number> {
  return (await readFile(join(dataDir, 'metadata', 'global', 'pg_control'))).readUInt32LE(DB_STATE_OFFSET)
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

describe('mayfly up: SIGTERM under traffic', { timeout: 240_000 }, () => {
  const started: MayflyProcess[] = []
  const nodePids: number[] = []
  let dir: string | undefined
  after(async () => {
    for (const p of started) if (p.alive()) await p.kill('SIGKILL')
    for (const pid of nodePids) if (await isAlive(pid)) process.kill(pid, 'SIGKILL')
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  async function startUp(dataDir: string, ports: number[]): Promise<MayflyProcess> {
    const [port, ...nodePorts] = ports
    const up = spawnMayfly(['up', '--data-dir', dataDir, '--port', String(port), '--node-ports', nodePorts.join(',')], {}, { group: true })
    started.push(up)
    await waitFor('mayfly up to be ready', async () => {
      if (!up.alive()) throw new Error(`mayfly up exited (${String(await up.exited)}):\n${up.output()}`)
      return (await getJson(`http://127.0.0.1:${port}/ready`).catch(() => ({ status: 0 }))).status === 200
    }, 90_000)
    nodePids.push(...(await childPids(up.pid)))
    return up
  }

  test('SIGKILL of up: its storage nodes, in a process group of their own, stop by themselves', async () => {
    dir ??= await mkdtemp(join(tmpdir(), 'mayfly-up-shutdown-'))
    const up = await startUp(join(dir, 'data-killed'), await freePorts(4))
    const children = await childPids(up.pid)
    assert.equal(children.length, 3)
    await up.kill('SIGKILL')
    await waitFor('every storage node of the killed up to stop', async () => {
      for (const pid of children) if (await isAlive(pid)) return false
      return true
    }, 20_000)
  })

  const stops: [string, (up: MayflyProcess) => Promise<unknown>][] = [
    ['SIGTERM to up', (up) => up.kill('SIGTERM')],
    // what a terminal sends to its foreground job, `up` and every child of it
    // alike: the storage nodes must not stop before the gateway has drained
    ['Ctrl-C (SIGINT to the process group)', async (up) => {
      process.kill(-up.pid, 'SIGINT')
      return up.exited
    }],
  ]
  for (const [how, stop] of stops) test(`${how}: stops accepting first, finishes what is in flight, closes PGlite, and starts again with every file`, async () => {
    dir ??= await mkdtemp(join(tmpdir(), 'mayfly-up-shutdown-'))
    const dataDir = join(dir, `data-${how.split(' ')[0]}`)
    const ports = await freePorts(4)
    const base = `http://127.0.0.1:${ports[0]}`
    const up = await startUp(dataDir, ports)
    const children = await childPids(up.pid)
    assert.equal(children.length, 3)

    const acked = new Map<string, string>()
    const big = await uploadGenerated(base, { size: 16 * MiB })
    assert.equal(big.status, 201, JSON.stringify(big.body))
    const bigId = String(big.body.id)
    acked.set(bigId, big.sha256)
    const small = randomBytes(100 * 1024)
    const form = multipart(small)
    const first = await call(`${base}/api/upload`, 'POST', form.body, { 'content-type': form.type })
    assert.ok(first !== 'refused' && first.status === 201)
    const known = { id: String(JSON.parse(first.body.toString()).id), sha: sha256(small) }
    acked.set(known.id, known.sha)

    // in flight at the signal: a download held after its first bytes, an upload held
    // after 2 MiB (both released once the gateway refuses new connections), and an
    // upload whose client stalls for good
    const release = deferred()
    const downloadHeld = deferred()
    const heldDownload = downloadHash(`${base}/api/download/${bigId}`, undefined, async (received) => {
      if (received > 0) {
        downloadHeld.resolve()
        await release.promise
      }
    })
    const uploadHeld = deferred()
    const heldUpload = uploadGenerated(base, {
      size: 6 * MiB,
      beforeChunk: async (sent) => {
        if (sent === 2 * MiB) {
          uploadHeld.resolve()
          await release.promise
        }
      },
    })
    const never = deferred()
    const stalled = uploadGenerated(base, {
      size: 4 * MiB,
      beforeChunk: async (sent) => {
        if (sent === MiB) await never.promise
      },
    }).then((r) => r.status, (err: unknown) => (err as Error).message)
    await Promise.all([downloadHeld.promise, uploadHeld.promise])

    const outcomes: Outcome[] = []
    const clients = Array.from({ length: 3 }, () => client(base, known, acked, outcomes))
    await waitFor('a little traffic served', () => outcomes.filter((o) => o.kind === 'ok').length >= 6, 30_000)

    const exited = stop(up)
    await waitFor('the gateway to refuse new connections', () => refuses(ports[0]!), 20_000)
    release.resolve()

    const download = await heldDownload
    assert.equal(download.status, 200)
    assert.equal(download.size, 16 * MiB, 'the download in flight at the signal got every byte')
    assert.equal(download.sha256, big.sha256)
    const upload = await heldUpload
    assert.equal(upload.status, 201, `the upload in flight at the signal: ${JSON.stringify(upload.body)}`)
    acked.set(String(upload.body.id), upload.sha256)
    await Promise.all(clients)
    const failed = outcomes.filter((o) => o.kind === 'failed')
    assert.deepEqual(failed, [], `requests the gateway accepted failed during the shutdown:\n${up.output().slice(-3000)}`)

    assert.equal(await exited, 0, `mayfly up exited with ${String(await exited)}:\n${up.output().slice(-3000)}`)
    assert.notEqual(await stalled, 201, 'the stalled upload was cut, not acknowledged')
    never.resolve()
    for (const pid of children) assert.equal(await isAlive(pid), false, `storage node ${pid} outlived up`)
    assert.equal(await pgliteState(dataDir), DB_SHUTDOWNED, 'PGlite was shut down cleanly')

    // the same data dir starts again and serves every acknowledged file
    const again = await startUp(dataDir, ports)
    for (const [id, sha] of acked) {
      const got = await downloadHash(`${base}/api/download/${id}`)
      assert.equal(got.status, 200, `file ${id} after the restart`)
      assert.equal(got.sha256, sha, `file ${id} after the restart`)
    }
    assert.equal(await again.kill('SIGTERM'), 0, again.output().slice(-3000))
    assert.equal(await pgliteState(dataDir), DB_SHUTDOWNED)
  })
})
