// MetadataStore on PGlite (Postgres compiled to WASM), for `mayfly up`: the
// same migrations and SQL as production, in-process, persisted under
// <dataDir>/metadata. PGlite has one connection: its transaction() holds a
// mutex that every other query waits on, so transactions are serialized and a
// transaction body must only use its own `tx` (ours do). One process only may
// open a data directory.
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { PGlite, type Transaction } from '@electric-sql/pglite'
import type { Logger } from '../../log.ts'
import type { MetadataStore } from '../../ports.ts'
import { translateSqlError } from '../sql/errors.ts'
import { createSqlMetadataStore } from '../sql/metadata-store.ts'
import { migrate } from '../sql/migrate.ts'
import type { SqlDb, SqlTx } from '../sql/sql-db.ts'

export interface EmbeddedMetadataOptions {
  /** the process's data directory; 'memory://' keeps everything in memory (tests) */
  dataDir: string
  log: Logger
}

const MEMORY = 'memory://'

async function translated<T>(work: Promise<T>): Promise<T> {
  try {
    return await work
  } catch (err) {
    throw translateSqlError(err)
  }
}

function txOf(tx: Pick<Transaction, 'query' | 'exec'>): SqlTx {
  return {
    async query<T>(text: string, params?: readonly unknown[]) {
      return (await tx.query<T>(text, params as unknown[] | undefined)).rows
    },
    async exec(text: string) {
      await tx.exec(text)
    },
  }
}

function createPgliteDb(pglite: PGlite): SqlDb {
  const direct = txOf(pglite)
  return {
    query: <T>(text: string, params?: readonly unknown[]) => translated(direct.query<T>(text, params)),
    exec: (text: string) => translated(direct.exec(text)),
    transaction: <T>(fn: (tx: SqlTx) => Promise<T>) => translated(pglite.transaction((tx) => fn(txOf(tx)))),
  }
}

export async function createEmbeddedMetadataStore(options: EmbeddedMetadataOptions): Promise<MetadataStore> {
  const log = options.log.child({ adapter: 'embedded-metadata' })
  const location = options.dataDir === MEMORY ? MEMORY : join(options.dataDir, 'metadata')
  if (location !== MEMORY) await mkdir(location, { recursive: true })
  const pglite = await PGlite.create(location)
  const db = createPgliteDb(pglite)
  try {
    await migrate(db, log)
  } catch (err) {
    await pglite.close()
    throw err
  }
  log.info({ location }, 'metadata store on embedded PGlite')

  let closed: Promise<void> | undefined
  return createSqlMetadataStore(db, {
    async status() {
      try {
        const [row] = await db.query<{ version: string }>(`SELECT current_setting('server_version') AS version`)
        return { name: 'metadata', kind: 'pglite', ok: true, detail: { location, version: row?.version } }
      } catch (err) {
        return { name: 'metadata', kind: 'pglite', ok: false, detail: { location, error: (err as Error).message } }
      }
    },
    close() {
      closed ??= pglite.closed ? Promise.resolve() : pglite.close()
      return closed
    },
  })
}
