// Applies migrations/NNN_name.sql in order, each once, recorded in
// schema_migrations. All pending migrations run in ONE transaction that first
// takes a transaction-level advisory lock, so processes starting together
// wait for each other instead of racing; the waiters then find the work done.
// PostgreSQL and PGlite run the same code (PGlite has a single connection, so
// the lock is trivially uncontended there). A migration must therefore be
// transactional: no CREATE INDEX CONCURRENTLY.
import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import type { Logger } from '../../log.ts'
import type { SqlDb } from './sql-db.ts'

/** The repository's migrations/ directory. */
export const MIGRATIONS_DIR = new URL('../../../migrations/', import.meta.url)

const FILE_NAME = /^(\d+)_[a-z0-9_-]+\.sql$/

export interface Migration {
  version: number
  name: string
  sql: string
  checksum: string
}

/** in: none. out: none. */
const CREATE_TABLE = `
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  checksum   text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`
/** in: none. out: none. Held until the transaction ends. */
const LOCK = `SELECT pg_advisory_xact_lock(hashtext('mayfly:schema_migrations'))::text AS locked`
/** in: none. out: version, name, checksum. */
const APPLIED = `SELECT version, name, checksum FROM schema_migrations ORDER BY version`
/** in: $1 version, $2 name, $3 checksum. out: none. */
const RECORD = `INSERT INTO schema_migrations (version, name, checksum) VALUES ($1::int, $2::text, $3::text)`

export async function readMigrations(dir: URL = MIGRATIONS_DIR): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.sql'))
  const migrations: Migration[] = []
  for (const name of names) {
    const match = FILE_NAME.exec(name)
    if (match === null) throw new Error(`migration file name must look like 001_name.sql: ${name}`)
    const sql = await readFile(new URL(name, dir), 'utf8')
    migrations.push({ version: Number(match[1]), name, sql, checksum: createHash('sha256').update(sql).digest('hex') })
  }
  migrations.sort((a, b) => a.version - b.version)
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]?.version === migrations[i - 1]?.version) throw new Error(`two migrations numbered ${migrations[i]?.version}`)
  }
  return migrations
}

/** Brings the schema up to date; returns the names it applied. Idempotent. */
export async function migrate(db: SqlDb, log: Logger, dir: URL = MIGRATIONS_DIR): Promise<string[]> {
  const migrations = await readMigrations(dir)
  const applied = await db.transaction(async (tx) => {
    await tx.query(LOCK)
    await tx.exec(CREATE_TABLE)
    const done = new Map(
      (await tx.query<{ version: number; name: string; checksum: string }>(APPLIED)).map((r) => [r.version, r]),
    )
    const now: string[] = []
    for (const m of migrations) {
      const previous = done.get(m.version)
      if (previous !== undefined) {
        if (previous.checksum !== m.checksum) {
          log.warn({ migration: m.name }, 'an applied migration changed on disk; add a new one instead')
        }
        continue
      }
      await tx.exec(m.sql)
      await tx.query(RECORD, [m.version, m.name, m.checksum])
      now.push(m.name)
    }
    return now
  })
  if (applied.length > 0) log.info({ applied }, 'metadata schema migrated')
  return applied
}
