// MetadataStore on PGlite (Postgres compiled to WASM), for `mayfly up`: the
// same migrations and SQL as production, in-process, persisted under
// <dataDir>/metadata. PGlite has one connection: its transaction() holds a
// mutex that every other query waits on, so transactions are serialized and a
// transaction body must only use its own `tx` (ours do). One process only may
// open a data directory: data-dir-lock.ts refuses a second one.
import { access, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { PGlite, type Transaction } from '@electric-sql/pglite'
import type { Logger } from '../../log.ts'
import type { MetadataStore } from '../../ports.ts'
import { Invalid } from '../../core/errors.ts'
import { translateSqlError } from '../sql/errors.ts'
import { createSqlMetadataStore } from '../sql/metadata-store.ts'
import { migrate } from '../sql/migrate.ts'
import type { SqlDb, SqlTx } from '../sql/sql-db.ts'
import { lockDataDir, type DataDirLock } from './data-dir-lock.ts'

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

export interface EmbeddedMetadataDb {
  db: SqlDb
  /** the PGlite directory, or 'memory://' */
  location: string
  close(): Promise<void>
}

/**
 * Opens the embedded metadata database of a data directory, locked to this
 * process, with its schema brought up to date. `mustExist`: refuse (Invalid)
 * a directory that holds none yet instead of creating it (`mayfly migrate`).
 * Throws Conflict while another process has it open.
 */
export async function openEmbeddedMetadataDb(options: EmbeddedMetadataOptions & { mustExist?: boolean; command?: string }): Promise<EmbeddedMetadataDb> {
  const log = options.log
  const location = options.dataDir === MEMORY ? MEMORY : join(options.dataDir, 'metadata')
  let lock: DataDirLock | null = null
  if (location !== MEMORY) {
    if (options.mustExist === true && !(await access(join(location, 'PG_VERSION')).then(() => true, () => false))) {
      throw new Invalid(`${options.dataDir} holds no embedded metadata (there is no ${location}): is it the data dir of \`mayfly up\`?`)
    }
    await mkdir(location, { recursive: true })
    lock = await lockDataDir(options.dataDir, options.command ?? `pid ${process.pid}`)
  }
  let pglite: PGlite
  try {
    pglite = await PGlite.create(location)
  } catch (err) {
    await lock?.release()
    throw err
  }
  const db = createPgliteDb(pglite)
  let closed: Promise<void> | undefined
  const close = () => {
    closed ??= (pglite.closed ? Promise.resolve() : pglite.close()).finally(() => lock?.release())
    return closed
  }
  try {
    await migrate(db, log)
  } catch (err) {
    await close()
    throw err
  }
  return { db, location, close }
}

export async function createEmbeddedMetadataStore(options: EmbeddedMetadataOptions): Promise<MetadataStore> {
  const log = options.log.child({ adapter: 'embedded-metadata' })
  const { db, location, close } = await openEmbeddedMetadataDb({ ...options, log, command: `mayfly ${process.argv.slice(2).join(' ')}`.trim() })
  log.info({ location }, 'metadata store on embedded PGlite')

  return createSqlMetadataStore(db, {
    async status() {
      try {
        const [row] = await db.query<{ version: string }>(`SELECT current_setting('server_version') AS version`)
        return { name: 'metadata', kind: 'pglite', ok: true, detail: { location, version: row?.version } }
      } catch (err) {
        return { name: 'metadata', kind: 'pglite', ok: false, detail: { location, error: (err as Error).message } }
      }
    },
    close,
  })
}
