// With MAYFLY_DATABASE_READ_URLS set, a lagging read replica must never decide
// that a dead link is alive (issue 7, bug 2): getFile reads the primary. The
// "replica" here is a second database holding the rows as they were before the
// change, which is what a replica that lags behind looks like to a reader.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createLogger } from '../../src/log.ts'
import type { MetadataStore } from '../../src/ports.ts'
import { createPostgresMetadataStore } from '../../src/adapters/postgres/metadata.ts'
import { createTestDatabase, type TestDatabase } from '../helpers/databases.ts'
import { newFile } from '../helpers/metadata-fixtures.ts'

const silent = createLogger('silent')

describe('reads with a lagging read replica', () => {
  const databases: TestDatabase[] = []
  const stores: MetadataStore[] = []
  let store: MetadataStore
  /** the replica's side: its rows stay as they were */
  let lagging: MetadataStore

  before(async () => {
    const [primary, replica] = [await createTestDatabase(), await createTestDatabase()]
    databases.push(primary, replica)
    lagging = await createPostgresMetadataStore({ url: replica.url, log: silent })
    store = await createPostgresMetadataStore({ url: primary.url, readUrls: [replica.url], log: silent })
    stores.push(lagging, store)
  })
  after(async () => {
    for (const s of stores) await s.close()
    for (const d of databases) await d.drop()
  })

  test('the replica does serve stale-tolerant reads (the node list)', async () => {
    // proves the reads below could reach the replica: a node only it knows of is listed
    const node = { id: 'only-on-replica', url: 'http://127.0.0.1:1', zone: 'a', version: 't', capacityBytes: 1, freeBytes: 1, usedBytes: 0, blobCount: 0, quarantined: 0 }
    await lagging.recordHeartbeat(node, new Date())
    assert.ok((await store.listNodes()).some((n) => n.id === node.id))
  })

  test('a deleted file reads as deleted while the replica still shows it alive', async () => {
    const file = newFile()
    await store.createFile(file)
    await lagging.createFile(file)
    await store.deleteFile(file.id, new Date())
    assert.equal((await lagging.getFile(file.id))?.deletedAt, null)
    for (let i = 0; i < 3; i++) assert.notEqual((await store.getFile(file.id))?.deletedAt ?? null, null)
  })

  test('a used-up link reads as used up while the replica still counts no download', async () => {
    const file = newFile({ maxDownloads: 1 })
    await store.createFile(file)
    await lagging.createFile(file)
    assert.equal((await store.claimDownload(file.id, new Date())).ok, true)
    for (let i = 0; i < 3; i++) {
      const read = await store.getFile(file.id)
      assert.equal(read?.downloads, 1)
      assert.notEqual(read?.exhaustedAt ?? null, null)
    }
  })
})
