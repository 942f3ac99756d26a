// Copies one metadata database into another (`mayfly migrate`: an embedded
// cluster's PGlite into PostgreSQL). Every table of the schema (schema-tables.ts,
// read from the catalog, so a new migration's table is not skipped) in
// foreign-key order, in batches of rows that travel as JSON text, so that
// PostgreSQL itself converts every value (timestamps to the microsecond,
// bigints beyond 2^53) and no driver's types come between.
//
// Idempotent: a row whose primary key is already in the target is left as
// it is (ON CONFLICT DO NOTHING). Except counters that others remember:
// COUNTERS' columns end at least as high as the source's (a storage node
// refuses a lease token lower than one it has seen, so a lower token in the
// target would fence the replication manager out of every node), and so do
// sequences. Refused, before anything is written: a target that holds files
// the source does not have (another cluster's database, or this cluster
// already running on it).
//
// The copy is one transaction on the target: a copy cut short leaves nothing,
// and a retry (pg-db's, after a failover) starts it again from the top.
import { Conflict } from '../../core/errors.ts'
import type { Logger } from '../../log.ts'
import { migrate } from './migrate.ts'
import { ident, readTables, SEQUENCES, type TableInfo } from './schema-tables.ts'
import type { SqlDb, SqlTx } from './sql-db.ts'

/** Columns that must end at least as high in the target as in the source, by table. */
export const COUNTERS: Record<string, string[]> = { leases: ['token'] }

export interface CopyProgress {
  /** the copy (re)starts: `total` rows in the source */
  start(total: number): void
  /** `rows` more rows of `table` went through */
  advance(table: string, rows: number): void
}

export interface TableCopy {
  table: string
  /** rows in the source */
  rows: number
  /** of them, written now */
  copied: number
  /** rows already in the target whose counters were raised to the source's */
  raised: number
  /** rows already in the target that differ from the source's (left as they are) */
  differing: number
}

export interface SequenceCopy {
  name: string
  /** whether the target's was raised to the source's */
  raised: boolean
}

export interface CopyResult {
  tables: TableCopy[]
  sequences: SequenceCopy[]
}

export interface CopyOptions {
  source: SqlDb
  target: SqlDb
  log: Logger
  batchSize?: number
  progress?: CopyProgress
}

/** in: none. out: present (bool): whether the schema has a files table. */
const HAS_FILES = `SELECT to_regclass('files') IS NOT NULL AS present`
/** in: $1 after (id), $2 limit. out: id. The target's file ids, a page in id order. */
const FILE_IDS = `SELECT id FROM files WHERE id > $1::text ORDER BY id LIMIT $2::int`
/** in: $1 ids (text[]). out: id: those of $1 that have no files row here. */
const MISSING_FILES = `SELECT k.id FROM unnest($1::text[]) AS k(id) WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.id = k.id)`
/** in: none. out: locked. Held until the transaction ends: copies into one target wait for each other. */
const LOCK = `SELECT pg_advisory_xact_lock(hashtext('mayfly:migrate'))::text AS locked`
/** in: $1 name, $2 value. out: raised: the sequence, lower in this database, now at $2. */
const RAISE_SEQUENCE = `
SELECT setval(quote_ident($1::text)::regclass, $2::bigint)::text AS raised
FROM pg_sequences WHERE schemaname = current_schema() AND sequencename = $1::text AND (last_value IS NULL OR last_value < $2::bigint)`

const list = (names: string[], prefix = '') => names.map((n) => `${prefix}${ident(n)}`).join(', ')

/**
 * in: $1 limit, ($2 the last row of the previous page, JSON). out: rows (a JSON
 * array of the page's rows), n, last (the page's last key, JSON). Pages in key order.
 */
function pageQuery(t: TableInfo, first: boolean): string {
  const key = list(t.primaryKey)
  const after = first ? '' : `WHERE (${key}) > (SELECT ${key} FROM json_populate_record(NULL::${ident(t.name)}, $2::json))`
  return `
WITH page AS (SELECT ${list(t.columns)} FROM ${ident(t.name)} ${after} ORDER BY ${key} LIMIT $1::int)
SELECT (SELECT json_agg(page)::text FROM page) AS rows, (SELECT count(*)::int FROM page) AS n,
  (SELECT row_to_json(l)::text FROM (SELECT ${key} FROM page ORDER BY ${t.primaryKey.map((c) => `${ident(c)} DESC`).join(', ')} LIMIT 1) l) AS last`
}

/** in: $1 rows (JSON array). out: inserted, raised. */
function insertQuery(t: TableInfo): string {
  const counters = (COUNTERS[t.name] ?? []).filter((c) => t.columns.includes(c))
  const onConflict =
    counters.length === 0
      ? 'ON CONFLICT DO NOTHING'
      : `ON CONFLICT (${list(t.primaryKey)}) DO UPDATE SET ${counters.map((c) => `${ident(c)} = GREATEST(cur.${ident(c)}, EXCLUDED.${ident(c)})`).join(', ')}
         WHERE ${counters.map((c) => `cur.${ident(c)} < EXCLUDED.${ident(c)}`).join(' OR ')}`
  return `
WITH written AS (
  INSERT INTO ${ident(t.name)} AS cur (${list(t.columns)}) ${t.identityAlways ? 'OVERRIDING SYSTEM VALUE' : ''}
  SELECT ${list(t.columns)} FROM json_populate_recordset(NULL::${ident(t.name)}, $1::json)
  ${onConflict}
  RETURNING (cur.xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted)::int AS inserted, count(*) FILTER (WHERE NOT inserted)::int AS raised FROM written`
}

/** in: $1 rows (JSON array). out: n: of them, rows whose target row differs (counters aside). Null: nothing can differ. */
function differingQuery(t: TableInfo): string | null {
  const compared = t.columns.filter((c) => !t.primaryKey.includes(c) && !(COUNTERS[t.name] ?? []).includes(c))
  if (compared.length === 0) return null
  return `
SELECT count(*)::int AS n FROM json_populate_recordset(NULL::${ident(t.name)}, $1::json) s
JOIN ${ident(t.name)} cur ON (${list(t.primaryKey, 'cur.')}) = (${list(t.primaryKey, 's.')})
WHERE ROW(${list(compared, 'cur.')}) IS DISTINCT FROM ROW(${list(compared, 's.')})`
}

/** How many files the target holds that the source does not, and a few of their ids. */
async function foreignFiles(source: SqlDb, target: Pick<SqlTx, 'query'>): Promise<{ count: number; examples: string[] }> {
  let after = ''
  let count = 0
  const examples: string[] = []
  for (;;) {
    const ids = (await target.query<{ id: string }>(FILE_IDS, [after, 1000])).map((r) => r.id)
    if (ids.length === 0) return { count, examples }
    const missing = (await source.query<{ id: string }>(MISSING_FILES, [ids])).map((r) => r.id)
    count += missing.length
    examples.push(...missing.slice(0, 3 - examples.length))
    after = ids[ids.length - 1]!
  }
}

async function refuseForeignFiles(source: SqlDb, target: Pick<SqlTx, 'query'>): Promise<void> {
  const { count, examples } = await foreignFiles(source, target)
  if (count === 0) return
  throw new Conflict(
    `the target database holds ${count} file(s) this data dir does not have (${examples.join(', ')}${count > examples.length ? ', …' : ''}): ` +
      'it is another cluster\'s metadata, or this cluster already runs on it and took uploads since a migration; nothing was copied',
    'target_not_empty',
  )
}

/** The source's tables, checked against the target's schema. */
async function plan(source: SqlDb, target: SqlDb): Promise<{ table: TableInfo; rows: number }[]> {
  const theirs = new Map((await readTables(target)).map((t) => [t.name, t]))
  const out: { table: TableInfo; rows: number }[] = []
  for (const table of await readTables(source)) {
    if (table.primaryKey.length === 0) {
      throw new Error(`table ${table.name} has no primary key: a copy could not tell which of its rows the target already has`)
    }
    const there = theirs.get(table.name)
    const lacking = there === undefined ? ['(the table)'] : table.columns.filter((c) => !there.columns.includes(c))
    if (lacking.length > 0) {
      throw new Error(`the target's schema lacks ${table.name} ${lacking.join(', ')}: it was migrated by another version of Mayfly than this data dir`)
    }
    const [count] = await source.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${ident(table.name)}`)
    out.push({ table, rows: count?.n ?? 0 })
  }
  return out
}

interface Page {
  rows: string | null
  n: number
  last: string | null
}

async function copyTable(source: SqlDb, tx: SqlTx, table: TableInfo, batchSize: number, progress?: CopyProgress): Promise<Omit<TableCopy, 'rows'>> {
  const insert = insertQuery(table)
  const differing = differingQuery(table)
  const result = { table: table.name, copied: 0, raised: 0, differing: 0 }
  let last: string | null = null
  for (;;) {
    const params: unknown[] = last === null ? [batchSize] : [batchSize, last]
    const page: Page | undefined = (await source.query<Page>(pageQuery(table, last === null), params))[0]
    if (page === undefined || page.n === 0 || page.rows === null) return result
    const [written] = await tx.query<{ inserted: number; raised: number }>(insert, [page.rows])
    result.copied += written?.inserted ?? 0
    result.raised += written?.raised ?? 0
    if (differing !== null && (written?.inserted ?? 0) < page.n) {
      result.differing += (await tx.query<{ n: number }>(differing, [page.rows]))[0]?.n ?? 0
    }
    progress?.advance(table.name, page.n)
    if (page.n < batchSize || page.last === null) return result
    last = page.last
  }
}

export async function copyMetadata(options: CopyOptions): Promise<CopyResult> {
  const { source, target, log } = options
  const batchSize = options.batchSize ?? 500
  // before migrate() touches the target: a refused target is left exactly as it was
  if ((await target.query<{ present: boolean }>(HAS_FILES, [], { idempotent: true }))[0]?.present === true) {
    await refuseForeignFiles(source, target)
  }
  await migrate(target, log)
  const tables = await plan(source, target)
  const sequences = await source.query<{ name: string; last_value: string | null }>(SEQUENCES)
  const total = tables.reduce((n, t) => n + t.rows, 0)

  return target.transaction(
    async (tx) => {
      await tx.query(LOCK)
      // again under the lock: a cluster may have started on the target meanwhile
      await refuseForeignFiles(source, tx)
      options.progress?.start(total)
      const copied: TableCopy[] = []
      for (const { table, rows } of tables) copied.push({ ...(await copyTable(source, tx, table, batchSize, options.progress)), rows })
      const raised: SequenceCopy[] = []
      for (const s of sequences) {
        if (s.last_value === null) continue
        raised.push({ name: s.name, raised: (await tx.query(RAISE_SEQUENCE, [s.name, s.last_value])).length > 0 })
      }
      return { tables: copied, sequences: raised }
    },
    { idempotent: true },
  )
}
