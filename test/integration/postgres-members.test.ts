// MAYFLY_DATABASE_URL in libpq's multi-host form (DESIGN §6, issue 7 bug 9):
// the adapter writes only to the member that accepts writes, skipping members
// that do not answer and members in recovery, finds the new primary after a
// failover, and refuses with a clear Unavailable when no member takes
// writes. The standby here is a real server in recovery (its own initdb with
// a standby.signal; see helpers/postgres-server.ts), promoted to play the
// failover.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import pg from 'pg'
import { Unavailable } from '../../src/core/errors.ts'
import { newId } from '../../src/core/ids.ts'
import { createLogger } from '../../src/log.ts'
import { createPostgresMetadataStore } from '../../src/adapters/postgres/metadata.ts'
import { newFile } from '../helpers/metadata-fixtures.ts'
import { createPostgresServer, type PostgresServer } from '../helpers/postgres-server.ts'

const silent = createLogger('silent')
/** a member that refuses connections */
const CLOSED = '127.0.0.1:1'

async function fileRows(server: PostgresServer, id: string): Promise<number> {
  const client = new pg.Client({ connectionString: server.url })
  await client.connect()
  try {
    return (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM files WHERE id = $1', [id])).rows[0]!.n
  } finally {
    await client.end()
  }
}

describe('PostgreSQL members of a multi-host url', { timeout: 120_000 }, () => {
  let primary: PostgresServer
  let standby: PostgresServer
  before(async () => {
    ;[primary, standby] = await Promise.all([createPostgresServer(), createPostgresServer()])
    await Promise.all([primary.start(), standby.start()])
    // the standby gets the schema while it still takes writes, then goes into recovery
    await (await createPostgresMetadataStore({ url: standby.url, log: silent })).close()
    await standby.stop()
    await standby.start({ standby: true })
  })
  after(async () => {
    await Promise.all([primary?.cleanup(), standby?.cleanup()])
  })

  test('only a member in recovery answers: refused with an Unavailable that names every member', async () => {
    const url = `postgres://postgres@${CLOSED},127.0.0.1:${standby.port}/postgres`
    const refused = await createPostgresMetadataStore({ url, log: silent, retryForMs: 300 }).then(
      () => assert.fail('a store opened on a url with no member that takes writes'),
      (err: unknown) => err,
    )
    assert.ok(refused instanceof Unavailable, String(refused))
    assert.match(refused.message, /no member of the database url accepts writes/)
    assert.match(refused.message, new RegExp(`${CLOSED}: .*ECONNREFUSED`))
    assert.match(refused.message, new RegExp(`127\\.0\\.0\\.1:${standby.port}: read-only`))
  })

  test('a read-only session (default_transaction_read_only in the url) does not count as taking writes', async () => {
    const url = `postgres://postgres@${CLOSED},127.0.0.1:5432/test?options=-c%20default_transaction_read_only%3Don`
    await assert.rejects(createPostgresMetadataStore({ url, log: silent, retryForMs: 300 }), (err: unknown) => {
      return err instanceof Unavailable && /127\.0\.0\.1:5432: read-only/.test(err.message)
    })
  })

  test('a multi-host read url is read from the member that answers, in recovery or not (no read-write check)', async (t) => {
    const store = await createPostgresMetadataStore({
      url: primary.url,
      readUrls: [`postgres://postgres@${CLOSED},127.0.0.1:${standby.port}/postgres`],
      log: silent,
    })
    t.after(() => store.close())
    await store.recordHeartbeat({
      id: `n-${newId()}`, url: 'http://127.0.0.1:9', zone: 'a', version: 'test',
      capacityBytes: 1, freeBytes: 1, usedBytes: 0, blobCount: 0, quarantined: 0,
    })
    // the node is on the primary only: the standby holds no nodes, so an empty list proves the read went there
    assert.deepEqual(await store.listNodes(), [])
  })

  // last: it promotes the standby
  test('writes go past a closed port and a standby to the primary, to the new primary after a failover, and back after a switchover', async (t) => {
    const url = `postgres://postgres@${CLOSED},127.0.0.1:${standby.port},127.0.0.1:${primary.port}/postgres`
    const store = await createPostgresMetadataStore({ url, log: silent, retryForMs: 20_000 })
    t.after(() => store.close())
    const before = await store.createFile(newFile())
    assert.equal(await fileRows(primary, before.id), 1)
    let status = await store.status()
    assert.equal(status.ok, true)
    assert.equal(status.detail.primary, `127.0.0.1:${primary.port}`)
    const roles = (status.detail.members as { address: string; role: string }[]).map((m) => [m.address, m.role])
    assert.deepEqual(roles, [[CLOSED, 'unreachable'], [`127.0.0.1:${standby.port}`, 'replica'], [`127.0.0.1:${primary.port}`, 'primary']])

    // the primary dies; the standby is promoted a moment later: a write in between waits and lands there
    await primary.stop()
    const during = store.createFile(newFile())
    await standby.promote()
    const after = await during
    assert.equal(await fileRows(standby, after.id), 1, 'the write landed on the new primary')
    await store.recordHeartbeat({
      id: `node-${newId()}`, url: 'http://127.0.0.1:8001', zone: 'a', version: '0', capacityBytes: 1, freeBytes: 1, usedBytes: 0, blobCount: 0, quarantined: 0,
    })
    status = await store.status()
    assert.equal(status.detail.primary, `127.0.0.1:${standby.port}`)
    assert.equal(status.ok, true)
    assert.notEqual(status.detail.last_failover_at, null, 'the move is on record')

    // a switchover back: the old primary returns, and the current one turns read-only under the
    // connections the store holds to it (as a demoted primary does): the next write meets 25006
    // there, nothing is applied, and it lands on the member that takes writes
    await primary.start()
    await sql(standby, 'ALTER SYSTEM SET default_transaction_read_only = on', 'SELECT pg_reload_conf()')
    const switched = await store.createFile(newFile())
    assert.equal(await fileRows(primary, switched.id), 1)
    assert.equal(await fileRows(standby, switched.id), 0)
    assert.equal((await store.status()).detail.primary, `127.0.0.1:${primary.port}`)
  })
})

async function sql(server: PostgresServer, ...statements: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: server.url })
  await client.connect()
  try {
    for (const s of statements) await client.query(s)
  } finally {
    await client.end()
  }
}
