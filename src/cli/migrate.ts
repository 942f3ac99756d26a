// `mayfly migrate --to URL [--data-dir DIR]` (DESIGN §2): moves an embedded
// cluster's metadata (PGlite under <data dir>/metadata) into PostgreSQL, so
// that the same data dir started with MAYFLY_DATABASE_URL=URL serves every
// file under its old id. The storage nodes' blobs stay where they are, under
// the same data dir, and so do their ids (<data dir>/nodeN/node-id), which
// the copied replica rows name. The copy itself is adapters/sql/copy-metadata.ts.
import { resolve } from 'node:path'
import { Presets, SingleBar } from 'cli-progress'
import { openEmbeddedMetadataDb } from '../adapters/embedded/metadata.ts'
import { describePostgresUrl, splitPostgresUrl } from '../adapters/postgres/hosts.ts'
import { createPgDb } from '../adapters/postgres/pg-db.ts'
import { copyMetadata, type CopyProgress, type CopyResult } from '../adapters/sql/copy-metadata.ts'
import { loadConfigOf } from '../config.ts'
import { Invalid } from '../core/errors.ts'
import { createLogger } from '../log.ts'

export interface MigrateOptions {
  to: string
  dataDir?: string
}

function progressBar(): CopyProgress & { stop(): void } {
  const bar = new SingleBar(
    { format: 'copying [{bar}] {percentage}% | {value} of {total} rows | {table}', hideCursor: true, stream: process.stderr },
    Presets.shades_classic,
  )
  let started = false
  let done = 0
  return {
    start(total) {
      done = 0 // again from the top when the copy is retried
      if (started) bar.stop()
      bar.start(Math.max(total, 1), 0, { table: '' })
      started = true
    },
    advance(table, rows) {
      done += rows
      bar.update(done, { table })
    },
    stop() {
      if (started) bar.stop()
      started = false
    },
  }
}

/** The url as the next command should show it: its password, if any, left for the operator to fill in. */
function withoutPassword(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:@/]*):[^@/]*@/i, '$1:PASSWORD@')
}

function quoted(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`
}

/** One line: rows per table, and what to run next. */
export function summary(result: CopyResult, to: string, dataDir: string): string {
  const copied = result.tables.reduce((n, t) => n + t.copied, 0)
  const rows = result.tables.reduce((n, t) => n + t.rows, 0)
  const perTable = result.tables.map((t) => `${t.table} ${t.copied}/${t.rows}`).join(', ')
  const raised = result.tables.filter((t) => t.raised > 0).map((t) => `${t.table} ${t.raised}`)
  const differing = result.tables.filter((t) => t.differing > 0).map((t) => `${t.table} ${t.differing}`)
  const what = copied === 0 && rows > 0 ? `nothing to copy: the target already holds all ${rows} rows` : `copied ${copied} of ${rows} rows`
  return [
    `migrated into ${describePostgresUrl(to)}: ${what} (copied/in the source: ${perTable})`,
    raised.length > 0 ? `; counters raised to the source's: ${raised.join(', ')}` : '',
    differing.length > 0 ? `; rows already there that differ from the source, left as they are: ${differing.join(', ')}` : '',
    `; next: MAYFLY_DATABASE_URL=${quoted(withoutPassword(to))} mayfly up --data-dir ${quoted(dataDir)}`,
  ].join('')
}

export async function migrateCommand(options: MigrateOptions): Promise<void> {
  try {
    splitPostgresUrl(options.to)
  } catch (err) {
    throw new Invalid(`--to: ${(err as Error).message}`)
  }
  const config = loadConfigOf(['MAYFLY_DATA_DIR', 'MAYFLY_LOG_LEVEL'])
  const dataDir = resolve(options.dataDir ?? config.MAYFLY_DATA_DIR)
  // the command speaks for itself (a progress bar, a summary, or the error that stopped it); the
  // adapters' logs (a retry a second, while a target is unreachable) only when MAYFLY_LOG_LEVEL asks
  const log = createLogger(process.env.MAYFLY_LOG_LEVEL === undefined ? 'error' : config.MAYFLY_LOG_LEVEL, { svc: 'migrate' })

  const source = await openEmbeddedMetadataDb({ dataDir, log, mustExist: true, command: 'mayfly migrate' })
  const target = createPgDb({ url: options.to, log, retryForMs: 10_000, poolSize: 2, statementTimeoutMs: 60_000 })
  const bar = progressBar()
  try {
    const result = await copyMetadata({ source: source.db, target, log, progress: bar })
    bar.stop()
    process.stdout.write(`${summary(result, options.to, dataDir)}\n`)
  } finally {
    bar.stop()
    await target.close()
    await source.close()
  }
}
