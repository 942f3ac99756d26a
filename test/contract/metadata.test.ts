// MetadataStore contract, run against embedded PGlite and a fresh PostgreSQL
// database (127.0.0.1:5432, or MAYFLY_TEST_DATABASE_URL). One suite, both adapters.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setImmediate } from 'node:timers/promises'
import pg from 'pg'
import { createTestDatabase, POSTGRES_ADMIN_URL } from '../helpers/databases.ts'
import { newFile, readyVariant } from '../helpers/metadata-fixtures.ts'
import { waitFor } from '../helpers/wait.ts'
import { pino } from 'pino'
import { PGlite } from '@electric-sql/pglite'
import { createLogger } from '../../src/log.ts'
import { Conflict, NotFound, Unavailable } from '../../src/core/errors.ts'
import { newId } from '../../src/core/ids.ts'
import type { MetadataStore } from '../../src/ports.ts'
import type { NodeTimings } from '../../src/core/node.ts'
import { createNodeDirectory } from '../../src/cluster/node-directory.ts'
import { createEmbeddedMetadataStore } from '../../src/adapters/embedded/metadata.ts'
import { createPostgresMetadataStore } from '../../src/adapters/postgres/metadata.ts'
import { readMigrations } from '../../src/adapters/sql/migrate.ts'

const silent = createLogger('silent')

interface Harness {
  /** a store on the suite's database (every call: the same database) */
  open(): Promise<MetadataStore>
  /** opens the same database again, twice at once where the backend allows it */
  reopen(): Promise<MetadataStore[]>
  /** rows in schema_migrations (the stores must be closed for PGlite) */
  countMigrations(): Promise<number>
  cleanup(): Promise<void>
}

function metadataContract(name: string, makeHarness: () => Promise<Harness>): void {
  describe(`metadata contract: ${name}`, () => {
    let harness: Harness
    let store: MetadataStore
    before(async () => {
      harness = await makeHarness()
      store = await harness.open()
    })
    after(async () => {
      await store?.close()
      await harness?.cleanup()
    })
    const below = async (factor: number) => (await store.replication.backlog(factor, 0)).blobsBelowFactor

    test('createFile then getFile returns every field', async () => {
      const input = newFile({
        maxDownloads: 3,
        passwordHash: 'scrypt$x',
        variants: [
          { name: 'thumbnail', state: 'pending', reason: null },
          { name: 'compressed', state: 'skipped', reason: 'too small' },
        ],
      })
      const created = await store.createFile(input)
      const got = await store.getFile(input.id)
      assert.deepEqual(got, created)
      assert.deepEqual(created, {
        id: input.id, blobKey: input.blob.key, name: 'cat.jpg', mime: 'image/jpeg', size: 5_000_000_000,
        sha256: input.blob.sha256, createdAt: input.createdAt, expiresAt: input.expiresAt, maxDownloads: 3,
        downloads: 0, passwordHash: 'scrypt$x', deleteTokenHash: 'hash', deletedAt: null, exhaustedAt: null,
        purgedAt: null,
      })
      assert.deepEqual(await store.listReplicas(input.blob.key), ['n1', 'n2'])
      assert.deepEqual(await store.listVariants(input.id), [
        { fileId: input.id, name: 'compressed', state: 'skipped', blob: null, mime: null, reason: 'too small' },
        { fileId: input.id, name: 'thumbnail', state: 'pending', blob: null, mime: null, reason: null },
      ])
      assert.equal(await store.getFile(newId()), null)
    })

    test('a duplicate file id is a Conflict and leaves nothing behind', async () => {
      const first = newFile()
      await store.createFile(first)
      const second = newFile({ id: first.id, replicas: ['n9'] })
      await assert.rejects(store.createFile(second), Conflict)
      assert.deepEqual(await store.listReplicas(second.blob.key), [])
      assert.equal((await store.getFile(first.id))?.blobKey, first.blob.key)
    })

    test('claims on an unlimited link all succeed', async () => {
      const file = await store.createFile(newFile())
      for (let i = 1; i <= 3; i++) {
        const claim = await store.claimDownload(file.id, new Date())
        assert.ok(claim.ok)
        assert.equal(claim.file.downloads, i)
        assert.equal(claim.file.exhaustedAt, null)
      }
    })

    test('the claim that takes the last download sets exhaustedAt; the next is refused', async () => {
      const file = await store.createFile(newFile({ maxDownloads: 2 }))
      const t1 = new Date()
      assert.ok((await store.claimDownload(file.id, t1)).ok)
      const t2 = new Date(t1.getTime() + 1000)
      const last = await store.claimDownload(file.id, t2)
      assert.ok(last.ok)
      assert.deepEqual(last.file.exhaustedAt, t2)
      const refused = await store.claimDownload(file.id, new Date(t2.getTime() + 1000))
      assert.equal(refused.ok, false)
      assert.equal(refused.reason, 'download_limit_reached')
      assert.ok('file' in refused && refused.file.downloads === 2)
    })

    test('claims on unknown, expired and deleted links are refused with the reason', async () => {
      assert.deepEqual(await store.claimDownload(newId(), new Date()), { ok: false, reason: 'not_found' })
      const now = new Date()
      const expired = await store.createFile(newFile({ expiresAt: new Date(now.getTime() - 1) }))
      const r1 = await store.claimDownload(expired.id, now)
      assert.equal(!r1.ok && r1.reason, 'expired')
      const deleted = await store.createFile(newFile({ maxDownloads: 1 }))
      assert.equal(await store.deleteFile(deleted.id, now), true)
      const r2 = await store.claimDownload(deleted.id, now)
      assert.equal(!r2.ok && r2.reason, 'deleted')
      assert.ok('file' in r2 && r2.file.downloads === 0)
    })

    test('40 concurrent claims on max_downloads = 25: exactly 25 succeed', async () => {
      const file = await store.createFile(newFile({ maxDownloads: 25 }))
      const results = await Promise.all(Array.from({ length: 40 }, () => store.claimDownload(file.id, new Date())))
      assert.equal(results.filter((r) => r.ok).length, 25)
      assert.ok(results.filter((r) => !r.ok).every((r) => r.reason === 'download_limit_reached'))
      const after = await store.getFile(file.id)
      assert.equal(after?.downloads, 25)
      assert.notEqual(after?.exhaustedAt, null)
    })

    test('a refund gives the download back and revives an exhausted link, once per claim', async () => {
      const file = await store.createFile(newFile({ maxDownloads: 2 }))
      const first = await store.claimDownload(file.id, new Date())
      const second = await store.claimDownload(file.id, new Date())
      assert.ok(first.ok && second.ok)
      assert.notEqual(first.claim, second.claim, 'every claim has its own name')
      assert.notEqual((await store.getFile(file.id))?.exhaustedAt, null)
      await store.refundDownload(file.id, second.claim)
      await store.refundDownload(file.id, second.claim) // a replayed refund gives nothing more back
      const refunded = await store.getFile(file.id)
      assert.equal(refunded?.downloads, 1)
      assert.equal(refunded?.exhaustedAt, null)
      assert.ok((await store.claimDownload(file.id, new Date())).ok)
      await store.refundDownload(newId(), first.claim) // another file's claim: nothing to do
      await store.refundDownload(file.id, newId()) // an unknown claim: nothing to do
      assert.equal((await store.getFile(file.id))?.downloads, 2)
    })

    test('receipts older than a bound are forgotten: their claims are no longer refundable', async () => {
      const file = await store.createFile(newFile({ maxDownloads: 3 }))
      const claim = await store.claimDownload(file.id, new Date(Date.now() - 3 * 24 * 3600_000))
      assert.ok(claim.ok)
      // other tests' receipts may be as old; forget in batches until this one is gone
      while ((await store.forgetReceipts(new Date(Date.now() - 24 * 3600_000), 1000)) > 0);
      await store.refundDownload(file.id, claim.claim)
      assert.equal((await store.getFile(file.id))?.downloads, 1, 'a forgotten claim is not refunded')
      const fresh = await store.claimDownload(file.id, new Date())
      assert.ok(fresh.ok)
      assert.equal(await store.forgetReceipts(new Date(Date.now() - 24 * 3600_000), 1000), 0)
      await store.refundDownload(file.id, fresh.claim)
      assert.equal((await store.getFile(file.id))?.downloads, 1, 'a fresh claim still is')
    })

    test('addDownloads counts batches on unlimited links, each once, and ignores limited and unknown ones', async () => {
      const open = await store.createFile(newFile())
      const limited = await store.createFile(newFile({ maxDownloads: 5 }))
      await store.addDownloads(new Map([[open.id, 3], [limited.id, 2], [newId(), 1]]), newId())
      const batch = newId()
      await store.addDownloads(new Map([[open.id, 2]]), batch)
      await store.addDownloads(new Map([[open.id, 2]]), batch) // sent again: counted once
      await store.addDownloads(new Map(), newId())
      assert.equal((await store.getFile(open.id))?.downloads, 5)
      assert.equal((await store.getFile(limited.id))?.downloads, 0)
    })

    test('deleteFile is idempotent and keeps the first time; false for an unknown id', async () => {
      const file = await store.createFile(newFile())
      const t1 = new Date()
      assert.equal(await store.deleteFile(file.id, t1), true)
      assert.equal(await store.deleteFile(file.id, new Date(t1.getTime() + 5000)), true)
      assert.deepEqual((await store.getFile(file.id))?.deletedAt, t1)
      assert.equal(await store.deleteFile(newId(), t1), false)
    })

    test('setVariant records ready (blob and replicas), failed and skipped; idempotently', async () => {
      const input = newFile({ variants: [{ name: 'thumbnail', state: 'pending', reason: null }] })
      const file = await store.createFile(input)
      const thumb = readyVariant(file.id, file.blobKey, 'thumbnail')
      await store.setVariant(thumb, ['n1', 'n3'])
      await store.setVariant(thumb, ['n1', 'n3'])
      await store.setVariant({ fileId: file.id, name: 'compressed', state: 'failed', blob: null, mime: null, reason: 'corrupt' }, [])
      assert.deepEqual(await store.listVariants(file.id), [
        { fileId: file.id, name: 'compressed', state: 'failed', blob: null, mime: null, reason: 'corrupt' },
        thumb,
      ])
      assert.deepEqual(await store.listReplicas(thumb.blob!.key), ['n1', 'n3'])
      await store.setVariant({ ...thumb, state: 'skipped', blob: null, mime: null, reason: 'not an image' }, [])
      assert.equal((await store.listVariants(file.id)).find((v) => v.name === 'thumbnail')?.state, 'skipped')
      await assert.rejects(store.setVariant(readyVariant(newId(), newId(), 'thumbnail'), ['n1']), NotFound)
    })

    test('listStalePendingVariants: live files with a variant pending since before the cutoff', async () => {
      const old = new Date(Date.now() - 60_000)
      const pending = [{ name: 'thumbnail' as const, state: 'pending' as const, reason: null }]
      const stuck = await store.createFile(newFile({ createdAt: old, variants: pending }))
      const done = await store.createFile(newFile({ createdAt: old, variants: pending }))
      await store.setVariant(readyVariant(done.id, done.blobKey, 'thumbnail'), ['n1'])
      const fresh = await store.createFile(newFile({ variants: pending }))
      const dead = await store.createFile(newFile({ createdAt: old, variants: pending }))
      await store.deleteFile(dead.id, new Date())
      const skipped = await store.createFile(newFile({ createdAt: old, variants: [{ name: 'thumbnail', state: 'skipped', reason: 'pdf' }] }))

      const ids = await store.listStalePendingVariants(new Date(Date.now() - 1000), 10_000)
      assert.ok(ids.includes(stuck.id))
      for (const f of [done, fresh, dead, skipped]) assert.equal(ids.includes(f.id), false)
    })

    test('replicas: add, remove, list, idempotent; the backlog counts blobs below the factor', async () => {
      const before = await below(3)
      const file = await store.createFile(newFile({ replicas: ['n1'] }))
      assert.equal(await below(3), before + 1)
      await store.addReplica(file.blobKey, 'n2')
      await store.addReplica(file.blobKey, 'n2')
      await store.addReplica(file.blobKey, 'n3')
      assert.deepEqual(await store.listReplicas(file.blobKey), ['n1', 'n2', 'n3'])
      assert.equal(await below(3), before)
      await store.removeReplica(file.blobKey, 'n1')
      await store.removeReplica(file.blobKey, 'n1')
      assert.deepEqual(await store.listReplicas(file.blobKey), ['n2', 'n3'])
      assert.equal(await below(3), before + 1)
      assert.equal(await below(2), await below(2))
      await assert.rejects(store.addReplica(newId(), 'n1'), NotFound)
      assert.deepEqual(await store.listReplicas(newId()), [])
    })

    test('listPurgeable: expired, exhausted and deleted files past the grace, with variant blobs', async () => {
      const now = new Date()
      const past = new Date(now.getTime() - 10_000)
      const expired = await store.createFile(newFile({ createdAt: past, expiresAt: new Date(now.getTime() - 5000) }))
      const exhausted = await store.createFile(newFile({ maxDownloads: 1 }))
      assert.ok((await store.claimDownload(exhausted.id, past)).ok)
      const deleted = await store.createFile(newFile({ replicas: ['n1'], variants: [{ name: 'thumbnail', state: 'pending', reason: null }] }))
      const thumb = readyVariant(deleted.id, deleted.blobKey, 'thumbnail')
      await store.setVariant(thumb, ['n2', 'n3'])
      await store.deleteFile(deleted.id, past)
      const alive = await store.createFile(newFile())
      const recent = await store.createFile(newFile())
      await store.deleteFile(recent.id, now) // died, but inside the grace period

      const items = await store.listPurgeable(new Date(now.getTime() - 1000), 10_000)
      const byId = new Map(items.map((i) => [i.fileId, i]))
      assert.deepEqual(byId.get(expired.id), { fileId: expired.id, blobs: [{ key: expired.blobKey, nodeIds: ['n1', 'n2'] }] })
      assert.deepEqual(byId.get(exhausted.id)?.blobs, [{ key: exhausted.blobKey, nodeIds: ['n1', 'n2'] }])
      assert.deepEqual(
        byId.get(deleted.id)?.blobs,
        [
          { key: deleted.blobKey, nodeIds: ['n1'] },
          { key: thumb.blob!.key, nodeIds: ['n2', 'n3'] },
        ].sort((a, b) => (a.key < b.key ? -1 : 1)),
      )
      assert.equal(byId.has(alive.id), false)
      assert.equal(byId.has(recent.id), false)
      assert.equal((await store.listPurgeable(now, 1)).length, 1)
    })

    test('markPurged waits for the last replica, then drops the blob rows', async () => {
      const before = await below(3)
      const file = await store.createFile(newFile({ replicas: ['n1', 'n2'], variants: [{ name: 'thumbnail', state: 'pending', reason: null }] }))
      const thumb = readyVariant(file.id, file.blobKey, 'thumbnail')
      await store.setVariant(thumb, ['n3'])
      const t = new Date()
      await store.deleteFile(file.id, new Date(t.getTime() - 5000))
      const [item] = (await store.listPurgeable(t, 10_000)).filter((i) => i.fileId === file.id)
      assert.ok(item)

      // a replica is left: nothing changes, the file stays listed
      await store.removeReplica(file.blobKey, 'n1')
      await store.removeReplica(file.blobKey, 'n2')
      await store.markPurged(file.id, t)
      assert.equal((await store.getFile(file.id))?.purgedAt, null)
      assert.ok((await store.listPurgeable(t, 10_000)).some((i) => i.fileId === file.id))

      await store.removeReplica(thumb.blob!.key, 'n3')
      await store.markPurged(file.id, t)
      await store.markPurged(file.id, new Date(t.getTime() + 1000)) // idempotent
      assert.deepEqual((await store.getFile(file.id))?.purgedAt, t)
      assert.equal((await store.listPurgeable(t, 10_000)).some((i) => i.fileId === file.id), false)
      // blob rows are gone: a late copy is refused so its maker deletes it
      await assert.rejects(store.addReplica(file.blobKey, 'n1'), NotFound)
      await assert.rejects(store.addReplica(thumb.blob!.key, 'n1'), NotFound)
      await assert.rejects(store.setVariant(thumb, ['n1']), NotFound)
      assert.equal(await below(3), before)
      assert.equal(await store.claimDownload(file.id, t).then((r) => r.ok), false)
      await store.markPurged(newId(), t) // unknown: nothing to do
    })

    test('pending blobs: begin, stale listing, abandon; activation by createFile', async () => {
      const t0 = new Date(Date.now() - 60_000)
      const stale = newId()
      const uploaded = newId()
      await store.beginBlob(stale, t0)
      await store.beginBlob(stale, new Date()) // idempotent: keeps the first time
      await store.beginBlob(uploaded, t0)
      let keys = await store.listStalePendingBlobs(new Date(t0.getTime() + 1), 10_000)
      assert.ok(keys.includes(stale) && keys.includes(uploaded))
      assert.equal((await store.listStalePendingBlobs(t0, 10_000)).includes(stale), false)

      const file = await store.createFile(newFile({ blob: { key: uploaded, size: 3, sha256: 'cd'.repeat(32) } }))
      await store.beginBlob(uploaded, t0) // does not demote an active blob
      keys = await store.listStalePendingBlobs(new Date(t0.getTime() + 1), 10_000)
      assert.ok(keys.includes(stale))
      assert.equal(keys.includes(uploaded), false)
      await store.abandonBlob(uploaded) // active: untouched
      assert.deepEqual(await store.listReplicas(file.blobKey), ['n1', 'n2'])

      await store.abandonBlob(stale)
      await store.abandonBlob(stale)
      assert.equal((await store.listStalePendingBlobs(new Date(), 10_000)).includes(stale), false)
    })

    test('gateways: beats and goodbyes; the uploads of a dead or stopped gateway become tombstones no createFile passes', async () => {
      const gateway = (name: string) => ({ id: `gw-${name}-${newId()}`, url: `http://127.0.0.1:1/${name}`, host: 'test', pid: 1, version: '0', startedAt: new Date() })
      const a = gateway('a')
      const b = gateway('b')
      await store.gateways.beat(a)
      await store.gateways.beat(b)
      const listed = (await store.gateways.list()).filter((g) => g.id === a.id || g.id === b.id)
      assert.equal(listed.length, 2)
      for (const g of listed) {
        assert.ok(g.heartbeatAgeMs >= 0 && g.heartbeatAgeMs < 2000, `age ${g.heartbeatAgeMs}`)
        assert.equal(g.stoppedAt, null)
      }
      const ofA = newId()
      const ofB = newId()
      const ownerless = newId()
      const twelveHoursAgo = new Date(Date.now() - 12 * 3600_000)
      await store.beginBlob(ofA, new Date(), a.id)
      await store.beginBlob(ofB, new Date(), b.id)
      await store.beginBlob(ownerless, new Date(twelveHoursAgo.getTime() - 1000))
      const abandon = () => store.gateways.abandonOrphanedUploads(300, twelveHoursAgo, 1000)
      assert.deepEqual(await abandon(), [], 'both gateways beat a moment ago')
      // everyone silent (the store was away): nobody is taken for dead
      await new Promise((r) => setTimeout(r, 400))
      assert.deepEqual(await abandon(), [])
      // b beats again, a does not: a is dead, its upload a tombstone
      await store.gateways.beat(b)
      assert.deepEqual(await abandon(), [ofA])
      assert.deepEqual(await abandon(), [], 'once')
      const onTombstone = newFile({ blob: { key: ofA, size: 3, sha256: 'cd'.repeat(32) } })
      await assert.rejects(store.createFile(onTombstone), Unavailable)
      assert.equal(await store.getFile(onTombstone.id), null)
      assert.equal((await store.replication.describeBlobs([ofA])).get(ofA)?.kind, 'dead')
      // owned blobs are the registry's; the ownerless stale one is listed as before
      const stale = await store.listStalePendingBlobs(new Date(), 10_000)
      assert.ok(stale.includes(ownerless))
      assert.equal(stale.includes(ofA) || stale.includes(ofB), false)

      assert.ok((await store.gateways.listAbandonedUploads(1000)).includes(ofA))
      await store.gateways.markCleared(ofA)
      assert.equal((await store.gateways.listAbandonedUploads(1000)).includes(ofA), false)
      await store.abandonBlob(ofA) // a gateway's own clean-up leaves the tombstone
      await assert.rejects(store.createFile(onTombstone), Unavailable)

      // a clean stop hands b's uploads over at once
      await store.gateways.leave(b.id)
      assert.notEqual((await store.gateways.list()).find((g) => g.id === b.id)?.stoppedAt ?? null, null)
      assert.deepEqual(await abandon(), [ofB])
      await assert.rejects(store.createFile(newFile({ blob: { key: ofB, size: 3, sha256: 'cd'.repeat(32) } })), Unavailable)

      // cleared tombstones and silent gateways are forgotten; an uncleared tombstone stays
      await store.gateways.forget(new Date(Date.now() + 1000), 1000)
      assert.deepEqual((await store.gateways.list()).filter((g) => g.id === a.id || g.id === b.id), [])
      assert.equal((await store.replication.describeBlobs([ofA])).get(ofA)?.kind, 'unknown')
      assert.deepEqual(await store.gateways.listAbandonedUploads(1000), [ofB])
    })

    test('recordHeartbeat upserts the node and keeps draining; listNodes returns them', async () => {
      const id = `node-${newId()}`
      const announcement = {
        id, url: 'http://127.0.0.1:8001', zone: 'a', version: '0.1.0',
        capacityBytes: 10_000_000_000, freeBytes: 6_000_000_000, usedBytes: 4_000_000_000, blobCount: 7, quarantined: 1,
      }
      const listed = async () => {
        const { lastHeartbeat, heartbeatAgeMs, ...rest } = (await store.listNodes()).find((n) => n.id === id)!
        assert.ok(lastHeartbeat instanceof Date && Number.isFinite(heartbeatAgeMs))
        return rest
      }
      await store.recordHeartbeat(announcement)
      assert.deepEqual(await listed(), { ...announcement, draining: false, lostAt: null })
      await store.recordHeartbeat({ ...announcement, url: 'http://127.0.0.1:9001', blobCount: 8 })
      assert.deepEqual(await listed(), { ...announcement, url: 'http://127.0.0.1:9001', blobCount: 8, draining: false, lostAt: null })
      assert.equal((await store.listNodes()).filter((n) => n.id === id).length, 1)
    })

    test("node states follow the database's clock, not the callers' (issue 7, bug 7)", async () => {
      const hour = 3_600_000
      const slow = () => new Date(Date.now() - hour)
      const fast = () => new Date(Date.now() + hour)
      const announce = (id: string) => ({
        id, url: 'http://127.0.0.1:8001', zone: 'a', version: '0.1.0', capacityBytes: 10, freeBytes: 10, usedBytes: 0, blobCount: 0, quarantined: 0,
      })
      const stateOf = async (id: string, timings: NodeTimings) => {
        // the directory reads no wall clock at all: a process whose clock is off sees the same states
        const directory = createNodeDirectory({ listNodes: () => store.listNodes(), timings, refreshMs: 0 })
        return (await directory.byId(id))?.state
      }
      const lenient = { suspectAfterMs: 30_000, downAfterMs: 60_000 }

      // a gateway an hour behind records a heartbeat: the node is up, not silent for an hour
      const behind = `node-${newId()}`
      await store.recordHeartbeat(announce(behind), slow())
      assert.equal(await stateOf(behind, lenient), 'up')
      const [record] = (await store.listNodes()).filter((n) => n.id === behind)
      assert.ok(Math.abs(record!.lastHeartbeat.getTime() - Date.now()) < hour / 2, 'stamped by the database, not the caller')

      // a gateway an hour ahead, then one an hour behind: the node then goes silent,
      // and it must not stay up on the fast clock's stamp
      const ahead = `node-${newId()}`
      await store.recordHeartbeat(announce(ahead), fast())
      await store.recordHeartbeat(announce(ahead), slow())
      const silentFor = 1_200
      await new Promise((r) => setTimeout(r, silentFor))
      const [silent] = (await store.listNodes()).filter((n) => n.id === ahead)
      assert.ok(silent!.heartbeatAgeMs >= silentFor - 50, `age ${silent!.heartbeatAgeMs} ms after ${silentFor} ms of silence`)
      const strict = { suspectAfterMs: silentFor / 2, downAfterMs: hour }
      assert.equal(await stateOf(ahead, strict), 'suspect')
      assert.equal(await stateOf(ahead, { suspectAfterMs: 100, downAfterMs: silentFor / 2 }), 'down')
    })

    test('status reports the store', async () => {
      const status = await store.status()
      assert.equal(status.name, 'metadata')
      assert.equal(status.ok, true)
    })

    test('migrations are idempotent: the same database opens again with its data', async () => {
      const file = await store.createFile(newFile())
      await store.close()
      const stores = await harness.reopen()
      try {
        for (const s of stores) assert.equal((await s.getFile(file.id))?.id, file.id)
      } finally {
        await Promise.all(stores.map((s) => s.close()))
      }
      assert.equal(await harness.countMigrations(), (await readMigrations()).length)
      store = await harness.open()
      assert.equal((await store.getFile(file.id))?.id, file.id)
    })
  })
}

metadataContract('pglite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mayfly-metadata-'))
  return {
    open: () => createEmbeddedMetadataStore({ dataDir: dir, log: silent }),
    // one process, one connection: a PGlite directory opens once at a time
    reopen: async () => [await createEmbeddedMetadataStore({ dataDir: dir, log: silent })],
    async countMigrations() {
      const db = await PGlite.create(join(dir, 'metadata'))
      try {
        return (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations')).rows[0]!.n
      } finally {
        await db.close()
      }
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  }
})

/** The suite on a fresh database, reached through `urlOf(the database's url)`. */
const postgresHarness = (urlOf: (url: string) => string) => async (): Promise<Harness> => {
  const db = await createTestDatabase()
  const open = () => createPostgresMetadataStore({ url: urlOf(db.url), log: silent })
  return {
    open,
    // two processes starting at once: the advisory lock serializes their migrations
    reopen: () => Promise.all([open(), open(), open()]),
    async countMigrations() {
      const client = new pg.Client({ connectionString: db.url })
      await client.connect()
      try {
        return (await client.query('SELECT count(*)::int AS n FROM schema_migrations')).rows[0].n
      } finally {
        await client.end()
      }
    },
    cleanup: () => db.drop(),
  }
}

metadataContract('postgresql', postgresHarness((url) => url))

// libpq's multi-host form (issue 7, bug 9): the first member refuses connections, the second takes writes
metadataContract('postgresql, multi-host url', postgresHarness((url) => {
  const multi = url.replace('@127.0.0.1:5432/', '@127.0.0.1:1,127.0.0.1:5432/')
  assert.notEqual(multi, url)
  return multi
}))

/** A fresh database for one test, dropped after it, and an admin connection to the server. */
async function freshDatabase(t: { after: (fn: () => Promise<void>) => void }): Promise<{ url: string; admin: pg.Client }> {
  const db = await createTestDatabase()
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
  await admin.connect()
  t.after(async () => {
    await admin.end()
    await db.drop()
  })
  return { url: db.url, admin }
}

/** A logger whose warnings the test can wait for. */
function watchedLogger() {
  const messages: string[] = []
  const waiters: { text: string; resolve: () => void }[] = []
  const log = pino({ level: 'warn' }, {
    write(line: string) {
      const entry = JSON.parse(line) as { msg: string; err?: { code?: string } }
      const msg = `${entry.msg} ${entry.err?.code ?? ''}`
      messages.push(msg)
      for (const w of waiters.filter((w) => msg.includes(w.text))) w.resolve()
    },
  })
  /** Resolves once a warning containing `text` was logged; fails after 5 s. */
  const warned = (text: string) =>
    messages.some((m) => m.includes(text))
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no warning "${text}" within 5 s`)), 5000)
          waiters.push({ text, resolve: () => { clearTimeout(timer); resolve() } })
        })
  return { log, warned }
}

describe('metadata on PostgreSQL: failures', () => {
  test('a failover (sessions killed, read-only until promoted) is ridden out; a claim counts once', async (t) => {
    const { url, admin } = await freshDatabase(t)
    const { log, warned } = watchedLogger()
    const store = await createPostgresMetadataStore({ url, log, retryForMs: 10_000 })
    t.after(() => store.close())
    const file = await store.createFile(newFile({ maxDownloads: 5 }))
    const db = new URL(url).pathname.slice(1)

    // the "old primary" goes away and the endpoint now reaches a server that refuses writes (25006)
    await admin.query(`ALTER DATABASE ${db} SET default_transaction_read_only = on`)
    const others = 'FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()'
    await admin.query(`SELECT pg_terminate_backend(pid) ${others}`, [db])
    while ((await admin.query(`SELECT count(*)::int AS n ${others}`, [db])).rows[0].n > 0) await setImmediate()
    // idempotent reads take every pooled connection, so the dead ones are found and replaced by these
    await Promise.all(Array.from({ length: 10 }, () => store.listNodes()))
    // 25006 proves nothing was applied: the claim is retried (its receipt would make even a replay count once)
    const claim = store.claimDownload(file.id, new Date())
    const begin = store.beginBlob(newId(), new Date())
    await warned('PostgreSQL unavailable, retrying 25006')

    // "promoted": new sessions accept writes; the pool drops every session that answered 25006
    await admin.query(`ALTER DATABASE ${db} RESET default_transaction_read_only`)
    assert.equal((await claim).ok, true)
    await begin
    assert.equal((await store.getFile(file.id))?.downloads, 1)
  })

  test('read replicas serve stale-tolerant reads; a failing one falls back to the primary', async (t) => {
    const { url } = await freshDatabase(t)
    const store = await createPostgresMetadataStore({ url, readUrls: [url, 'postgres://postgres@127.0.0.1:1/none'], log: silent })
    t.after(() => store.close())
    const file = await store.createFile(newFile())
    for (let i = 0; i < 4; i++) {
      assert.equal((await store.getFile(file.id))?.id, file.id)
      assert.equal((await store.replication.backlog(3, 0)).blobsBelowFactor, 1)
    }
    // the replicas are probed in the background: the first answer comes within a probe's time
    const reads = await waitFor('both read replicas probed', async () => {
      const status = await store.status()
      assert.equal(status.ok, true)
      const found = status.detail.read_replicas as { ok: boolean; skipped: boolean; error: string | null }[]
      return found.every((r) => r.error !== 'not probed yet') ? found : undefined
    }, 5000)
    assert.deepEqual(reads.map((r) => [r.ok, r.skipped]), [[true, false], [false, true]])
    const status = await store.status()
    assert.equal(JSON.stringify(status).includes('postgres://'), false)
  })

  test('an unreachable server is Unavailable', async () => {
    const started = Date.now()
    await assert.rejects(
      createPostgresMetadataStore({ url: 'postgres://postgres@127.0.0.1:1/none', log: silent, retryForMs: 300 }),
      Unavailable,
    )
    assert.ok(Date.now() - started < 5000)
  })

  test('a fresh database migrated by four stores starting at once', async (t) => {
    const db = await createTestDatabase()
    t.after(() => db.drop())
    const stores = await Promise.all(Array.from({ length: 4 }, () => createPostgresMetadataStore({ url: db.url, log: silent })))
    const file = await stores[0]!.createFile(newFile())
    assert.equal((await stores[3]!.getFile(file.id))?.id, file.id)
    await Promise.all(stores.map((s) => s.close()))
  })
})
