// The metadata schema's tables as the database itself describes them (the
// catalog, after migrate()): their columns, primary keys and foreign keys, in
// an order where every table comes after the tables it references. `mayfly
// migrate` copies them in that order, so a table a new migration adds is
// copied without anyone listing it. PostgreSQL and PGlite read the same
// catalog.
import type { SqlTx } from './sql-db.ts'

export interface TableInfo {
  name: string
  /** the columns a copy writes: every column but the generated ones, in table order */
  columns: string[]
  /** the primary key's columns, in key order (empty: the table has none) */
  primaryKey: string[]
  /** tables this one references by foreign key (itself excluded) */
  references: string[]
  /** whether it has a GENERATED ALWAYS AS IDENTITY column (an insert must say OVERRIDING SYSTEM VALUE) */
  identityAlways: boolean
}

/** migrate()'s own bookkeeping: each database keeps its own, never copied */
export const OWN_TABLES = ['schema_migrations']

/** in: none. out: name, columns (text[]), generated (bool[]), identity_always. Ordinary tables of the current schema. */
const TABLES = `
SELECT c.relname AS name,
  array_agg(a.attname::text ORDER BY a.attnum) AS columns,
  array_agg(a.attgenerated <> '' ORDER BY a.attnum) AS generated,
  bool_or(a.attidentity = 'a') AS identity_always
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
GROUP BY c.relname
ORDER BY c.relname`

/** in: none. out: name (table), columns (text[], the primary key's in key order). */
const PRIMARY_KEYS = `
SELECT c.relname AS name, array_agg(a.attname::text ORDER BY k.ord) AS columns
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname = current_schema()
GROUP BY c.relname`

/** in: none. out: name (referencing table), target (referenced table). */
const FOREIGN_KEYS = `
SELECT DISTINCT c.relname AS name, t.relname AS target
FROM pg_constraint f
JOIN pg_class c ON c.oid = f.conrelid
JOIN pg_class t ON t.oid = f.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE f.contype = 'f' AND n.nspname = current_schema()`

/** in: none. out: name, last_value (text; null before its first nextval). Sequences of the current schema. */
export const SEQUENCES = `
SELECT sequencename::text AS name, last_value::text AS last_value
FROM pg_sequences WHERE schemaname = current_schema() ORDER BY sequencename`

/** A quoted SQL identifier. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** Every table of the schema but OWN_TABLES, each after the tables it references. */
export async function readTables(db: Pick<SqlTx, 'query'>): Promise<TableInfo[]> {
  const rows = await db.query<{ name: string; columns: string[]; generated: boolean[]; identity_always: boolean }>(TABLES)
  const keys = new Map((await db.query<{ name: string; columns: string[] }>(PRIMARY_KEYS)).map((r) => [r.name, r.columns]))
  const refs = new Map<string, string[]>()
  for (const fk of await db.query<{ name: string; target: string }>(FOREIGN_KEYS)) {
    if (fk.name !== fk.target) refs.set(fk.name, [...(refs.get(fk.name) ?? []), fk.target])
  }
  const tables = rows
    .filter((r) => !OWN_TABLES.includes(r.name))
    .map((r) => ({
      name: r.name,
      columns: r.columns.filter((_, i) => r.generated[i] !== true),
      primaryKey: keys.get(r.name) ?? [],
      references: (refs.get(r.name) ?? []).sort(),
      identityAlways: r.identity_always,
    }))
  return dependencyOrder(tables)
}

/** Tables ordered so that each comes after those it references (ties by name); throws on a cycle. */
export function dependencyOrder(tables: TableInfo[]): TableInfo[] {
  const byName = new Map(tables.map((t) => [t.name, t]))
  const ordered: TableInfo[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (table: TableInfo, path: string[]) => {
    if (state.get(table.name) === 'done') return
    if (state.get(table.name) === 'visiting') throw new Error(`the metadata tables reference each other in a cycle (${[...path, table.name].join(' -> ')}): no copy order`)
    state.set(table.name, 'visiting')
    for (const name of table.references) {
      const target = byName.get(name)
      if (target === undefined) throw new Error(`table ${table.name} references ${name}, which is not a table of the schema`)
      visit(target, [...path, table.name])
    }
    state.set(table.name, 'done')
    ordered.push(table)
  }
  for (const table of [...tables].sort((a, b) => a.name.localeCompare(b.name))) visit(table, [])
  return ordered
}
