// The copy under `mayfly migrate` (src/adapters/sql/copy-metadata.ts), from an
// embedded PGlite into a fresh PostgreSQL database: the table list the copy
// reads from the catalog covers every table the migrations create; a table
// that references another is copied after it whatever its name; values come
// through exactly (bigints beyond 2^53, microseconds, arrays, bytes); pages of
// a composite key all arrive; identity sequences and lease tokens end at
// least as high as the source's; a second copy writes nothing; a row already
// in the target is left as it is and reported when it differs; a table
// without a primary key is refused.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { after, before, describe, test } from 'node:test'
import { openEmbeddedMetadataDb, type EmbeddedMetadataDb } from '../../src/adapters/embedded/metadata.ts'
import { createPgDb, type PgDb } from '../../src/adapters/postgres/pg-db.ts'
import { copyMetadata, COUNTERS, type CopyResult } from '../../src/adapters/sql/copy-metadata.ts'
import { migrate, MIGRATIONS_DIR } from '../../src/adapters/sql/migrate.ts'
import { dependencyOrder, OWN_TABLES, readTables, type TableInfo } from '../../src/adapters/sql/schema-tables.ts'
import { createLogger } from '../../src/log.ts'
import { createTestDatabase, type TestDatabase } from '../helpers/databases.ts'
import { newFile } from '../helpers/metadata-fixtures.ts'

const log = createLogger('silent')

/** Tables made by this test in both databases, on top of the metadata schema. */
const EXTRA = `
CREATE TABLE zz_parent (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, big bigint NOT NULL, at timestamptz NOT NULL, tags text[], data bytea,
  doubled bigint GENERATED ALWAYS AS (big / 2) STORED);
CREATE TABLE aa_child (parent_id bigint NOT NULL REFERENCES zz_parent (id), n integer NOT NULL, note text, PRIMARY KEY (parent_id, n));`

const BIG = 2n ** 62n

function byTable(result: CopyResult): Record<string, { rows: number; copied: number; raised: number; differing: number }> {
  return Object.fromEntries(result.tables.map(({ table, ...rest }) => [table, rest]))
}

describe('copying the metadata from PGlite into PostgreSQL', { timeout: 60_000 }, () => {
  let source: EmbeddedMetadataDb
  let database: TestDatabase
  let target: PgDb
  const file = newFile()

  before(async () => {
    source = await openEmbeddedMetadataDb({ dataDir: 'memory://', log })
    database = await createTestDatabase()
    target = createPgDb({ url: database.url, log })
  })
  after(async () => {
    await target?.close()
    await source?.close()
    await database?.drop()
  })

  test('the tables read from the catalog are every table the migrations create, each after those it references', async () => {
    const created = new Set<string>()
    for (const name of await readdir(MIGRATIONS_DIR)) {
      const sql = await readFile(new URL(name, MIGRATIONS_DIR), 'utf8')
      for (const m of sql.matchAll(/^\s*CREATE TABLE (?:IF NOT EXISTS )?(\w+)/gim)) created.add(m[1]!)
    }
    const tables = await readTables(source.db)
    assert.deepEqual(tables.map((t) => t.name).sort(), [...created].sort())
    assert.ok(['files', 'blobs', 'replicas', 'variants', 'nodes', 'leases', 'control'].every((t) => created.has(t)))
    for (const t of tables) assert.ok(t.primaryKey.length > 0, `${t.name} has a primary key (a copy needs one to be idempotent)`)
    const position = new Map(tables.map((t, i) => [t.name, i]))
    for (const t of tables) for (const r of t.references) assert.ok(position.get(r)! < position.get(t.name)!, `${t.name} after ${r}`)
    assert.ok(position.get('variants')! > position.get('files')! && position.get('replicas')! > position.get('blobs')!)
    assert.ok(!tables.some((t) => t.name === OWN_TABLES[0]))
    assert.ok(!tables.find((t) => t.name === 'files')!.columns.includes('dies_at'), 'generated columns are not written')
    for (const [table, columns] of Object.entries(COUNTERS)) {
      for (const c of columns) assert.ok(tables.find((t) => t.name === table)?.columns.includes(c), `counter ${table}.${c} exists`)
    }
  })

  test('a cycle of references has no copy order', () => {
    const t = (name: string, references: string[]): TableInfo => ({ name, columns: ['id'], primaryKey: ['id'], references, identityAlways: false })
    assert.deepEqual(dependencyOrder([t('b', ['c']), t('a', ['b']), t('c', [])]).map((x) => x.name), ['c', 'b', 'a'])
    assert.throws(() => dependencyOrder([t('a', ['b']), t('b', ['a'])]), /cycle \(a -> b -> a\)/)
  })

  test('a copy brings every row across exactly, in pages, with counters at least as high as the source\'s', async () => {
    await migrate(target, log)
    for (const db of [source.db, target]) await db.exec(EXTRA)
    for (let i = 1; i <= 7; i++) {
      await source.db.query(
        `INSERT INTO zz_parent (big, at, tags, data) VALUES ($1::bigint, $2::timestamptz, $3::text[], decode($4::text, 'hex'))`,
        [String(BIG + BigInt(i)), `2026-03-0${i}T10:11:12.${String(i).repeat(6)}Z`, ['a', `b"${i}`, null], `00ff${i}0`],
      )
      for (let n = 1; n <= 3; n++) await source.db.query(`INSERT INTO aa_child VALUES ($1::bigint, $2::int, $3::text)`, [i, n, `child ${i}.${n}`])
    }
    await source.db.query(
      `INSERT INTO files (id, blob_key, name, mime, size, sha256, created_at, expires_at, max_downloads, downloads, delete_token_hash)
       VALUES ($1, $2, $3, 'image/jpeg', 10, 'ab', now(), now() + interval '1 hour', 3, 1, 'h')`,
      [file.id, file.blob.key, 'cat.jpg'],
    )
    await source.db.query(`INSERT INTO leases VALUES ('replicator', 'old-manager', 41, now())`)
    // the target already has: the lease at a lower token, and the file under another name (as if changed there)
    await target.query(`INSERT INTO leases VALUES ('replicator', 'someone', 5, now())`)
    await target.query(
      `INSERT INTO files (id, blob_key, name, mime, size, sha256, created_at, expires_at, max_downloads, downloads, delete_token_hash)
       VALUES ($1, $2, 'renamed.jpg', 'image/jpeg', 10, 'ab', now(), now() + interval '1 hour', 3, 2, 'h')`,
      [file.id, file.blob.key],
    )

    const started: number[] = []
    const advanced: Record<string, number> = {}
    const first = byTable(
      await copyMetadata({
        source: source.db, target, log, batchSize: 4,
        progress: { start: (total) => started.push(total), advance: (table, rows) => (advanced[table] = (advanced[table] ?? 0) + rows) },
      }),
    )
    assert.deepEqual(first.zz_parent, { rows: 7, copied: 7, raised: 0, differing: 0 })
    assert.deepEqual(first.aa_child, { rows: 21, copied: 21, raised: 0, differing: 0 })
    assert.deepEqual(first.leases, { rows: 1, copied: 0, raised: 1, differing: 1 }, 'its holder is not the source\'s')
    assert.deepEqual(first.files, { rows: 1, copied: 0, raised: 0, differing: 1 })
    assert.deepEqual(started, [30])
    assert.deepEqual(advanced, { aa_child: 21, files: 1, leases: 1, zz_parent: 7 })

    const compare = `SELECT p.id::text, p.big::text, p.doubled::text, to_char(p.at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at, p.tags, encode(p.data, 'hex') AS data,
      (SELECT string_agg(c.n || ':' || c.note, ',' ORDER BY c.n) FROM aa_child c WHERE c.parent_id = p.id) AS children
      FROM zz_parent p ORDER BY p.id`
    const copied = await target.query(compare)
    assert.deepEqual(copied, await source.db.query(compare))
    assert.equal((copied[6] as { big: string }).big, String(BIG + 7n))
    assert.equal((copied[2] as { at: string }).at, '2026-03-03 10:11:12.333333')

    // the lease's token rose to the source's, the rest of the row is the target's; the file is left as it was
    assert.deepEqual(await target.query(`SELECT holder, token::int FROM leases`), [{ holder: 'someone', token: 41 }])
    assert.deepEqual(await target.query(`SELECT name, downloads FROM files`), [{ name: 'renamed.jpg', downloads: 2 }])
    // the identity sequence went on from the source's: the next row gets 8, not 1
    assert.deepEqual(await target.query(`INSERT INTO zz_parent (big, at) VALUES (1, now()) RETURNING id::int`), [{ id: 8 }])
    await target.query(`DELETE FROM zz_parent WHERE id = 8`)

    const second = byTable(await copyMetadata({ source: source.db, target, log, batchSize: 4 }))
    for (const [table, t] of Object.entries(second)) assert.equal(t.copied + t.raised, 0, `${table}: nothing written the second time`)
    assert.equal(second.files!.differing, 1)
    assert.equal((await target.query<{ n: number }>(`SELECT count(*)::int AS n FROM aa_child`))[0]!.n, 21)
  })

  test('a table without a primary key is refused before anything is copied', async () => {
    await source.db.exec(`CREATE TABLE keyless (x int); INSERT INTO keyless VALUES (1)`)
    await target.exec(`CREATE TABLE keyless (x int)`)
    await source.db.query(`INSERT INTO aa_child VALUES (1, 4, 'new')`)
    await assert.rejects(copyMetadata({ source: source.db, target, log }), /table keyless has no primary key/)
    assert.equal((await target.query<{ n: number }>(`SELECT count(*)::int AS n FROM aa_child`))[0]!.n, 21)
  })
})
