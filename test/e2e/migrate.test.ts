// Issue 9, part 6: `mayfly migrate --to URL` moves an embedded cluster's
// metadata into PostgreSQL. Real processes: `mayfly up` on a temp data dir
// (embedded PGlite) takes a limited file with one download counted, a
// password-protected file with an expiry and a photo with its variants; the
// migration runs twice (the second copies nothing and says so); `mayfly up` on
// the same data dir with MAYFLY_DATABASE_URL then serves every file under its
// old id with its limits, count, expiry, password and variants. Refused, with
// nothing written: a data dir a running `mayfly up` has open, a data dir
// without embedded metadata, and a database that holds another cluster's file.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { access, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import pg from 'pg'
import { createPostgresMetadataStore } from '../../src/adapters/postgres/metadata.ts'
import { createLogger } from '../../src/log.ts'
import { createTestDatabase, type TestDatabase } from '../helpers/databases.ts'
import { getJson, photoPaths, sha256, upload, waitFor } from '../helpers/http.ts'
import { freePorts, runMayfly, spawnMayfly, type MayflyProcess } from '../helpers/mayfly-process.ts'
import { newFile } from '../helpers/metadata-fixtures.ts'

const PASSWORD = 'correct horse battery'

interface Snapshot {
  [table: string]: { rows: number; digest: string | null }
}

/** Every table of a database's public schema: its row count and a digest of its rows. */
async function snapshot(url: string): Promise<Snapshot> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const tables = (await client.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)).rows
    const out: Snapshot = {}
    for (const { name } of tables) {
      const [row] = (await client.query<{ rows: number; digest: string | null }>(
        `SELECT count(*)::int AS rows, md5(string_agg(t::text, '|' ORDER BY t::text)) AS digest FROM "${name}" t`,
      )).rows
      out[name] = row!
    }
    return out
  } finally {
    await client.end()
  }
}

/** `mayfly up` on `dataDir`, ready (200 on /ready) */
async function startUp(dataDir: string, env: Record<string, string> = {}): Promise<{ up: MayflyProcess; base: string }> {
  const [port, ...nodePorts] = await freePorts(4)
  const up = spawnMayfly(['up', '--data-dir', dataDir, '--port', String(port), '--node-ports', nodePorts.join(',')], {
    MAYFLY_HEARTBEAT_INTERVAL_MS: '250',
    ...env,
  })
  const base = `http://127.0.0.1:${port}`
  await waitFor('mayfly up to be ready', async () => {
    if (!up.alive()) throw new Error(`mayfly up exited (${String(await up.exited)}):\n${up.output().slice(-3000)}`)
    return (await getJson(`${base}/ready`).catch(() => ({ status: 0 }))).status === 200
  }, 30_000)
  return { up, base }
}

/** The per-table figures of a summary line: table -> [copied, in the source]. */
function perTable(stdout: string): Record<string, [number, number]> {
  const list = /\(copied\/in the source: ([^)]*)\)/.exec(stdout)?.[1]
  assert.ok(list !== undefined, `no per-table figures in: ${stdout}`)
  return Object.fromEntries(list.split(', ').map((item) => {
    const [table, figures] = item.split(' ') as [string, string]
    const [copied, rows] = figures.split('/').map(Number) as [number, number]
    return [table, [copied, rows]]
  }))
}

describe('mayfly migrate: an embedded cluster into PostgreSQL', { timeout: 120_000 }, () => {
  let dir: string
  let dataDir: string
  let db: TestDatabase
  let other: TestDatabase
  let up: MayflyProcess | undefined
  let base: string
  const plain = randomBytes(200_000)
  const secret = randomBytes(50_000)
  let photo: Buffer
  /** the files' info pages as the embedded cluster served them */
  const before_: Record<'plain' | 'secret' | 'photo', Record<string, unknown>> = { plain: {}, secret: {}, photo: {} }
  let nodeIds: string[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-migrate-'))
    dataDir = join(dir, 'data')
    db = await createTestDatabase()
    other = await createTestDatabase()
    ;({ up, base } = await startUp(dataDir))

    const a = await upload(base, plain, { max_downloads: '3' }, 'plain.bin')
    assert.equal(a.status, 201, JSON.stringify(a.body))
    const first = await fetch(`${base}/api/download/${String(a.body.id)}`)
    assert.equal(first.status, 200)
    assert.equal(sha256(Buffer.from(await first.arrayBuffer())), sha256(plain))

    const b = await upload(base, secret, { password: PASSWORD, expires_in: '7200' }, 'secret.bin')
    assert.equal(b.status, 201, JSON.stringify(b.body))

    const photoPath = (await photoPaths()).find((p) => p.includes('colorfulcups'))!
    photo = await readFile(photoPath)
    const c = await upload(base, photoPath)
    assert.equal(c.status, 201, JSON.stringify(c.body))
    await waitFor('the photo\'s variants', async () => {
      const vs = (await getJson(`${base}/api/files/${String(c.body.id)}`)).body.variants as { state: string }[]
      return vs.length === 2 && vs.every((v) => v.state === 'ready')
    }, 30_000)

    for (const [name, id] of [['plain', a.body.id], ['secret', b.body.id], ['photo', c.body.id]] as const) {
      before_[name] = (await getJson(`${base}/api/files/${String(id)}`)).body
    }
    assert.equal(before_.plain.downloads, 1)
    nodeIds = ((await getJson(`${base}/api/nodes`)).body.nodes as { id: string }[]).map((n) => n.id).sort()
    assert.equal(nodeIds.length, 3)
  })

  after(async () => {
    if (up?.alive()) await up.kill('SIGKILL')
    await db?.drop()
    await other?.drop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('refused while `mayfly up` has the data dir open: nothing written', async () => {
    const run = await runMayfly(['migrate', '--to', db.url, '--data-dir', dataDir])
    assert.notEqual(run.code, 0)
    assert.match(run.stderr, new RegExp(`in use by process ${up!.pid} \\(mayfly up`), run.stderr)
    assert.deepEqual(await snapshot(db.url), {}, 'the target has no table')
    assert.equal((await getJson(`${base}/api/files/${String(before_.plain.id)}`)).status, 200, 'the cluster still serves')

    assert.equal(await up!.kill('SIGTERM'), 0, up!.output().slice(-3000))
  })

  test('refused: a data dir without embedded metadata, and a bad url', async () => {
    const empty = join(dir, 'empty')
    await mkdir(empty)
    const run = await runMayfly(['migrate', '--to', db.url, '--data-dir', empty])
    assert.equal(run.code, 1)
    assert.match(run.stderr, /holds no embedded metadata/)
    await assert.rejects(access(join(empty, 'metadata')), 'no metadata made up in its place')

    const bad = await runMayfly(['migrate', '--to', 'mysql://nowhere/db', '--data-dir', dataDir])
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /--to: must be a postgres:\/\//)
    assert.deepEqual(await snapshot(db.url), {})
  })

  let firstCounts: Record<string, [number, number]>
  let migrated: Snapshot

  test('copies every table, and says what to run next', async () => {
    const run = await runMayfly(['migrate', '--to', db.url, '--data-dir', dataDir])
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stdout.trim().split('\n').length, 1, `one line: ${run.stdout}`)
    assert.match(run.stdout, new RegExp(`next: MAYFLY_DATABASE_URL=${db.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} mayfly up --data-dir ${dataDir}`))
    firstCounts = perTable(run.stdout)
    for (const [table, [copied, rows]] of Object.entries(firstCounts)) assert.equal(copied, rows, `${table}: every row copied`)
    assert.deepEqual(firstCounts.files, [3, 3])
    assert.deepEqual(firstCounts.variants, [6, 6], 'two per file: the photo\'s ready, the others skipped')
    assert.deepEqual(firstCounts.nodes, [3, 3])
    assert.ok(firstCounts.blobs![0] >= 5 && firstCounts.replicas![0] >= 10, run.stdout)

    migrated = await snapshot(db.url)
    // every table of the target's schema but migrate()'s own was copied, with the source's row count
    const tables = Object.keys(migrated).filter((t) => t !== 'schema_migrations').sort()
    assert.deepEqual(Object.keys(firstCounts).sort(), tables)
    for (const t of tables) assert.equal(migrated[t]!.rows, firstCounts[t]![1], t)
  })

  test('a second run copies nothing, says so, and leaves the target as it was', async () => {
    const run = await runMayfly(['migrate', '--to', db.url, '--data-dir', dataDir])
    assert.equal(run.code, 0, run.stderr)
    assert.match(run.stdout, /nothing to copy: the target already holds all \d+ rows/)
    assert.doesNotMatch(run.stdout, /differ/)
    const again = perTable(run.stdout)
    assert.deepEqual(Object.keys(again), Object.keys(firstCounts))
    for (const [table, [copied, rows]] of Object.entries(again)) assert.deepEqual([copied, rows], [0, firstCounts[table]![1]], table)
    assert.deepEqual(await snapshot(db.url), migrated)
  })

  test('`mayfly up` on the same data dir with MAYFLY_DATABASE_URL serves every file as before', async () => {
    ;({ up, base } = await startUp(dataDir, { MAYFLY_DATABASE_URL: db.url }))
    assert.match(up.output(), /metadata store on PostgreSQL/)
    const nodes = (await getJson(`${base}/api/nodes`)).body.nodes as { id: string; state: string }[]
    assert.deepEqual(nodes.map((n) => n.id).sort(), nodeIds, 'the storage nodes keep their ids')

    const kept = ['id', 'name', 'size', 'sha256', 'mime', 'created_at', 'expires_at', 'max_downloads', 'downloads', 'downloads_remaining']
    for (const name of ['plain', 'secret', 'photo'] as const) {
      const now = (await getJson(`${base}/api/files/${String(before_[name].id)}`)).body
      for (const field of kept) assert.deepEqual(now[field], before_[name][field], `${name}.${field}`)
    }
    assert.equal(before_.plain.downloads_remaining, 2)

    // the limit goes on from the count: two more downloads, then 410
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${base}/api/download/${String(before_.plain.id)}`)
      assert.equal(res.status, 200)
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(plain))
    }
    const gone = await fetch(`${base}/api/download/${String(before_.plain.id)}`)
    assert.equal(gone.status, 410)
    assert.equal(((await gone.json()) as { error: string }).error, 'download_limit_reached')

    // the password is still required
    const locked = await fetch(`${base}/api/download/${String(before_.secret.id)}`)
    assert.equal(locked.status, 401)
    assert.equal(((await locked.json()) as { error: string }).error, 'password_required')
    const opened = await fetch(`${base}/api/download/${String(before_.secret.id)}`, { headers: { 'x-mayfly-password': PASSWORD } })
    assert.equal(opened.status, 200)
    assert.equal(sha256(Buffer.from(await opened.arrayBuffer())), sha256(secret))

    // the photo and its variants
    const original = await fetch(`${base}/api/download/${String(before_.photo.id)}`)
    assert.equal(original.status, 200)
    assert.equal(sha256(Buffer.from(await original.arrayBuffer())), sha256(photo))
    // as before but for their urls, which name the gateway's (new) port
    const withoutUrl = (vs: unknown) => (vs as { url: unknown }[]).map(({ url: _url, ...v }) => v)
    const variants = withoutUrl(before_.photo.variants) as { name: string; state: string; size: number }[]
    assert.deepEqual(withoutUrl((await getJson(`${base}/api/files/${String(before_.photo.id)}`)).body.variants), variants)
    for (const v of variants) {
      const res = await fetch(`${base}/api/files/${String(before_.photo.id)}/variants/${v.name}`)
      assert.equal(res.status, 200, v.name)
      assert.equal((await res.arrayBuffer()).byteLength, v.size, v.name)
    }
    assert.equal((await fetch(`${base}/api/files/${String(before_.photo.id)}/thumbnail`)).status, 200)

    assert.equal(await up.kill('SIGTERM'), 0, up.output().slice(-3000))
  })

  test('a database that holds another cluster\'s file is refused and left as it was', async () => {
    const store = await createPostgresMetadataStore({ url: other.url, log: createLogger('silent') })
    try {
      await store.createFile(newFile())
    } finally {
      await store.close()
    }
    const was = await snapshot(other.url)
    const run = await runMayfly(['migrate', '--to', other.url, '--data-dir', dataDir])
    assert.equal(run.code, 1, run.stdout)
    assert.match(run.stderr, /holds 1 file\(s\) this data dir does not have/)
    assert.equal(run.stdout, '')
    assert.deepEqual(await snapshot(other.url), was)
  })
})
