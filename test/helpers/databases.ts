// A fresh PostgreSQL database per test or run, on the machine's server, so
// that tests never see each other's rows; drop() removes it.
import { randomBytes } from 'node:crypto'
import pg from 'pg'

export const POSTGRES_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/test'

export interface TestDatabase {
  url: string
  name: string
  drop(): Promise<void>
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `mayfly_test_${randomBytes(6).toString('hex')}`
  await adminQuery(`CREATE DATABASE ${name}`)
  const url = new URL(POSTGRES_ADMIN_URL)
  url.pathname = `/${name}`
  return { url: url.href, name, drop: () => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) }
}

async function adminQuery(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
  await admin.connect()
  try {
    await admin.query(sql)
  } finally {
    await admin.end()
  }
}
