// Issue 13, part 1: PostgreSQL ending Mayfly's connections must be an outage
// to wait out, never a crash. Found from outside: a killed postmaster or
// backend (57P01 "terminating connection due to administrator command", or a
// reset connection) made `mayfly up` exit with "Unhandled 'error' event" from
// a node-postgres client. Here `mayfly up` and a `mayfly replicator` of their
// own run against a PostgreSQL server this test starts on a spare port (the
// machine's own PostgreSQL is left alone), under a mixed load, while the test
// terminates every Mayfly backend (pooled connections, busy or idle, the
// leader's lease queries) several times, then restarts the server in fast and
// in immediate mode. Every process lives on, and the load recovers.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import pg from 'pg'
import { getJson, upload } from '../helpers/http.ts'
import { startMixedLoad } from '../helpers/load.ts'
import { freePorts, spawnMayfly, type MayflyProcess } from '../helpers/mayfly-process.ts'
import { createPostgresServer } from '../helpers/postgres-server.ts'
import { waitFor } from '../helpers/wait.ts'

const TERMINATE_ROUNDS = 5

describe('PostgreSQL ends Mayfly\'s connections', { timeout: 180_000 }, () => {
  const cleanups: (() => Promise<unknown>)[] = []
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
  })

  test('terminated backends and restarts (fast, immediate) under load: no process dies, the load recovers', async () => {
    const server = await createPostgresServer()
    cleanups.push(() => server.cleanup())
    await server.start()
    const dir = await mkdtemp(join(tmpdir(), 'mayfly-pg-kill-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const [port, ...nodePorts] = await freePorts(4)
    const base = `http://127.0.0.1:${port}`
    const env = { MAYFLY_DATABASE_URL: server.url, MAYFLY_LOG_LEVEL: 'warn' }
    const up = spawnMayfly(['up', '--data-dir', join(dir, 'data'), '--port', String(port), '--node-ports', nodePorts.join(',')], env, { group: true })
    cleanups.push(() => up.kill('SIGTERM'))
    await waitFor('mayfly up ready', async () => {
      if (!up.alive()) throw new Error(`mayfly up exited:\n${up.output()}`)
      return (await getJson(`${base}/ready`).catch(() => ({ status: 0 }))).status === 200
    }, 90_000)
    const secret = (await readFile(join(dir, 'data', 'cluster-secret'), 'utf8')).trim()
    // a second manager in a process of its own: it stands by on the lease, querying it all along
    const replicator: MayflyProcess = spawnMayfly(['replicator'], { ...env, MAYFLY_CLUSTER_SECRET: secret, MAYFLY_DATA_DIR: join(dir, 'replicator') })
    cleanups.push(() => replicator.kill('SIGTERM'))
    const processes = { up, replicator }

    const connectAdmin = async () => {
      const client = new pg.Client({ connectionString: server.url })
      client.on('error', () => undefined)
      await client.connect()
      return client
    }
    let adminClient = await connectAdmin()
    cleanups.push(() => adminClient.end())

    const load = startMixedLoad(base, { clients: 4, maxBytes: 64 * 1024 })
    cleanups.push(() => load.stop())
    await waitFor('20 acknowledged uploads', () => load.acked.size >= 20, 30_000)

    let terminated = 0
    for (let round = 0; round < TERMINATE_ROUNDS; round++) {
      const { rows } = await adminClient.query<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'mayfly' AND pid <> pg_backend_pid()`,
      )
      terminated += rows[0]!.n
      await new Promise((resolve) => setTimeout(resolve, 700))
    }
    assert.ok(terminated >= TERMINATE_ROUNDS, `backends were terminated (${terminated})`)
    const afterTerminations = load.acked.size

    for (const mode of ['fast', 'immediate'] as const) {
      await adminClient.end().catch(() => undefined)
      await server.restart(mode)
      adminClient = await connectAdmin()
      const before = load.acked.size
      await waitFor(`uploads acknowledged again after the ${mode} restart`, () => {
        if (!up.alive()) throw new Error(`mayfly up died:\n${up.output().slice(-4000)}`)
        return load.acked.size >= before + 5
      }, 45_000).catch(async (err: Error) => {
        const report = await load.stop()
        throw new Error(`${err.message}; last client errors: ${report.errors.slice(-3).join(' | ')}; up: ${up.output().slice(-2000)}`)
      })
    }
    const report = await load.stop()
    console.log(
      `${terminated} backends terminated in ${TERMINATE_ROUNDS} rounds, then a fast and an immediate restart: ` +
        `${report.uploads} uploads, ${report.downloads} downloads, ${report.errors.length} failed requests, slowest ${report.slowestMs} ms`,
    )
    assert.ok(load.acked.size > afterTerminations, 'uploads went on after the terminations')
    // every acknowledged upload still reads back
    const ids = [...load.acked.keys()].slice(-10)
    for (const id of ids) assert.equal((await fetch(`${base}/api/download/${id}`).then(async (r) => (await r.arrayBuffer(), r.status))), 200)
    assert.equal((await upload(base, Buffer.from('after the restarts'))).status, 201)
    for (const [name, p] of Object.entries(processes)) {
      assert.ok(p.alive(), `${name} lives on:\n${p.output().slice(-3000)}`)
      assert.doesNotMatch(p.output(), /Unhandled 'error' event|uncaught/i, `${name} logged no unhandled error`)
    }
  })
})
