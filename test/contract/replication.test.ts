// ReplicationStore contract (the replication manager's side of the metadata
// store), run against embedded PGlite and a fresh PostgreSQL database. One
// database per run: every test makes its own ids and keys, and compares
// before/after or filters by its own keys, so other tests' rows do not matter.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as delay } from 'node:timers/promises'
import { createTestDatabase } from '../helpers/databases.ts'
import { waitFor } from '../helpers/wait.ts'
import { newFile, readyVariant } from '../helpers/metadata-fixtures.ts'
import { createLogger } from '../../src/log.ts'
import { LeaseLost } from '../../src/core/errors.ts'
import { newId } from '../../src/core/ids.ts'
import type { FileRecord } from '../../src/core/file.ts'
import type { NodeAnnouncement } from '../../src/core/node.ts'
import type { BlobPlacement, Fence, Lease, MetadataStore, NewFile, ReplicationStore } from '../../src/ports.ts'
import { createEmbeddedMetadataStore } from '../../src/adapters/embedded/metadata.ts'
import { createPostgresMetadataStore } from '../../src/adapters/postgres/metadata.ts'

const silent = createLogger('silent')
const MINUTE = 60_000
/** more rows than any test makes, so a listing is complete */
const ALL = 100_000

/** A fresh node id (never heartbeated unless a test announces it). */
const nodeId = () => `node-${newId()}`

/** A fresh blob key starting with `first`, to control byte order. */
const keyStarting = (first: string) => first + newId().slice(1)

function announcement(id: string, zone = 'a'): NodeAnnouncement {
  return {
    id, url: 'http://127.0.0.1:1', zone, version: '0.1.0',
    capacityBytes: 1_000_000, freeBytes: 600_000, usedBytes: 400_000, blobCount: 0, quarantined: 0,
  }
}

const byKey = <T extends { key: string }>(a: T, b: T) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
/** Byte order, the order of a storage node's inventory (ASCII keys: UTF-16 order is byte order). */
const byteSorted = (keys: string[]) => [...keys].sort()
/** A placement with its node ids sorted (their order is not part of the contract). */
const normalized = <T extends BlobPlacement>(p: T): T => ({ ...p, nodeIds: [...p.nodeIds].sort() })

interface Harness {
  store: MetadataStore
  cleanup(): Promise<void>
}

function replicationContract(name: string, makeHarness: () => Promise<Harness>): void {
  describe(`replication contract: ${name}`, () => {
    let harness: Harness
    let store: MetadataStore
    let repl: ReplicationStore
    before(async () => {
      harness = await makeHarness()
      store = harness.store
      repl = store.replication
    })
    after(() => harness?.cleanup())

    /** A live file created a minute ago (old enough for any min-age below that). */
    const liveFile = (replicas: string[], overrides: Partial<NewFile> = {}) =>
      store.createFile(newFile({ createdAt: new Date(Date.now() - MINUTE), replicas, ...overrides }))
    /** A blob's replicas, sorted (listReplicas promises no order). */
    const replicasOf = async (key: string) => byteSorted(await store.listReplicas(key))
    const withKey = (key: string, size = 100): Partial<NewFile> => ({ blob: { key, size, sha256: 'ef'.repeat(32) } })

    async function deadFiles(replicas: string[]): Promise<{ deleted: FileRecord; expired: FileRecord; exhausted: FileRecord }> {
      const now = Date.now()
      const deleted = await liveFile(replicas)
      assert.equal(await store.deleteFile(deleted.id, new Date(now - 1000)), true)
      const expired = await liveFile(replicas, { expiresAt: new Date(now - 1000) })
      const exhausted = await liveFile(replicas, { maxDownloads: 1 })
      assert.ok((await store.claimDownload(exhausted.id, new Date(now - 1000))).ok)
      return { deleted, expired, exhausted }
    }

    /** A file that died, lost its last replica and was purged (its blob rows are gone). */
    async function purgedFile(): Promise<FileRecord> {
      const file = await liveFile(['n-purge'])
      await store.deleteFile(file.id, new Date(Date.now() - 1000))
      await store.removeReplica(file.blobKey, 'n-purge')
      await store.markPurged(file.id, new Date())
      assert.notEqual((await store.getFile(file.id))?.purgedAt, null)
      return file
    }

    async function acquire(leaseName: string, holder: string, ttlMs = 10 * MINUTE): Promise<Lease> {
      const lease = await repl.acquireLease(leaseName, holder, ttlMs)
      assert.ok(lease, `${holder} takes the free lease ${leaseName}`)
      return lease
    }

    /** Until the lease lapses, a fenced no-op (reconciling a node nobody knows) succeeds. */
    async function fenceHolds(fence: Fence): Promise<boolean> {
      try {
        await repl.markNodeReconciled(nodeId(), fence)
        return true
      } catch (err) {
        if (err instanceof LeaseLost) return false
        throw err
      }
    }

    describe('leases', () => {
      test('one holder at a time; after release the next holder gets a larger token', async () => {
        const leaseName = `lease-${newId()}`
        const first = await acquire(leaseName, 'a')
        assert.equal(first.name, leaseName)
        assert.ok(Number.isSafeInteger(first.token))
        assert.equal(await repl.acquireLease(leaseName, 'b', MINUTE), null)
        assert.ok(await repl.acquireLease(`lease-${newId()}`, 'b', MINUTE), 'another name is another lease')

        await first.release()
        assert.equal(await fenceHolds(first), false, 'a released lease fences nothing, even before someone takes it')
        const second = await acquire(leaseName, 'b')
        assert.ok(second.token > first.token)
        await first.release() // idempotent, and not ours any more: must not free the second
        assert.equal(await repl.acquireLease(leaseName, 'c', MINUTE), null)
        assert.equal(await second.renew(), true)
        assert.equal(await fenceHolds(second), true)
        await second.release()
        const third = await acquire(leaseName, 'c')
        assert.ok(third.token > second.token)
        await third.release()
      })

      test('an expired lease goes to the next holder; the old holder can no longer renew', async () => {
        const leaseName = `lease-${newId()}`
        const started = Date.now()
        const first = await acquire(leaseName, 'a', 2000)
        assert.equal(await repl.acquireLease(leaseName, 'b', MINUTE), null, 'live for its ttl')
        let second: Lease | null = null
        await waitFor('takeover after expiry', async () => (second = await repl.acquireLease(leaseName, 'b', MINUTE)) !== null)
        assert.ok(Date.now() - started >= 2000 - 5, 'not before its ttl ran out')
        const taken = second as Lease | null
        assert.ok(taken)
        assert.ok(taken.token > first.token)
        assert.equal(await first.renew(), false, 'someone else holds it now')
        assert.equal(await repl.acquireLease(leaseName, 'a', MINUTE), null, "the old holder's renew did not take it back")
        assert.equal(await fenceHolds(taken), true)
        assert.equal(await fenceHolds(first), false)
        await taken.release()
      })

      test('renew keeps the lease past its ttl', async () => {
        const leaseName = `lease-${newId()}`
        const ttlMs = 1500
        const lease = await acquire(leaseName, 'a', ttlMs)
        const started = Date.now()
        while (Date.now() - started < 2 * ttlMs) {
          assert.equal(await lease.renew(), true)
          assert.equal(await repl.acquireLease(leaseName, 'b', MINUTE), null)
          await delay(100)
        }
        assert.equal(await fenceHolds(lease), true, 'still the live lease well past its first ttl')
        await lease.release()
      })
    })

    describe('fencing', () => {
      /**
       * Rows that each fenced change would alter: a blob on `holder` and `up`,
       * a node `up` (declaring it lost would drop its row), a node `lost`
       * (reconciling it would clear lostAt), and `newcomer` without a copy.
       */
      async function scene() {
        const holder = nodeId()
        const up = nodeId()
        const lost = nodeId()
        const newcomer = nodeId()
        await store.recordHeartbeat(announcement(up), new Date())
        await store.recordHeartbeat(announcement(lost), new Date())
        const file = await liveFile([holder, up])
        const setup = await acquire(`setup-${newId()}`, 'setup')
        await repl.declareNodeLost(lost, setup)
        await setup.release()
        const state = async () => ({
          replicas: await replicasOf(file.blobKey),
          nodes: (await store.listNodes()).filter((n) => n.id === up || n.id === lost).map((n) => ({ id: n.id, lostAt: n.lostAt })),
        })
        const before = await state()
        assert.deepEqual(before.replicas, byteSorted([holder, up]))
        assert.equal(before.nodes.length, 2)
        assert.ok(before.nodes.find((n) => n.id === lost)?.lostAt instanceof Date)
        assert.equal(before.nodes.find((n) => n.id === up)?.lostAt, null)
        return { holder, up, lost, newcomer, key: file.blobKey, state }
      }

      async function refusedAndUnchanged(fence: Fence, s: Awaited<ReturnType<typeof scene>>): Promise<void> {
        const before = await s.state()
        await assert.rejects(repl.addReplica(s.key, s.newcomer, fence), LeaseLost)
        await assert.rejects(repl.removeReplica(s.key, s.holder, fence), LeaseLost)
        await assert.rejects(repl.declareNodeLost(s.up, fence), LeaseLost)
        await assert.rejects(repl.markNodeReconciled(s.lost, fence), LeaseLost)
        assert.deepEqual(await s.state(), before)
      }

      test('with the live lease, every fenced change takes effect', async () => {
        const s = await scene()
        const lease = await acquire(`fence-${newId()}`, 'a')
        assert.equal(await repl.addReplica(s.key, s.newcomer, lease), true)
        assert.deepEqual(await replicasOf(s.key), byteSorted([s.holder, s.up, s.newcomer]))
        await repl.removeReplica(s.key, s.holder, lease)
        assert.deepEqual(await replicasOf(s.key), byteSorted([s.up, s.newcomer]))
        assert.equal(await repl.declareNodeLost(s.up, lease), 1)
        assert.deepEqual(await replicasOf(s.key), [s.newcomer])
        await repl.markNodeReconciled(s.lost, lease)
        const nodes = await store.listNodes()
        assert.equal(nodes.find((n) => n.id === s.lost)?.lostAt, null)
        assert.ok(nodes.find((n) => n.id === s.up)?.lostAt instanceof Date)
        await lease.release()
      })

      test('with an old token (another holder took the lease) they throw LeaseLost and change nothing', async () => {
        const s = await scene()
        const leaseName = `fence-${newId()}`
        const old = await acquire(leaseName, 'a')
        await old.release()
        const current = await acquire(leaseName, 'b')
        await refusedAndUnchanged({ name: leaseName, token: old.token }, s)
        // a token of a name that never had a lease is no fence either
        await refusedAndUnchanged({ name: `never-${newId()}`, token: current.token }, s)
        // the scene is not inert: the live token changes it
        assert.equal(await repl.addReplica(s.key, s.newcomer, current), true)
        assert.ok((await replicasOf(s.key)).includes(s.newcomer))
        await current.release()
      })

      test('with an expired lease they throw LeaseLost and change nothing', async () => {
        const s = await scene()
        const lease = await acquire(`fence-${newId()}`, 'a', 2000)
        assert.equal(await fenceHolds(lease), true)
        await waitFor('lease expiry', async () => !(await fenceHolds(lease)))
        await refusedAndUnchanged(lease, s)
      })
    })

    describe('finding work', () => {
      test('listWork: live blobs below or above the factor, not at it, not dead, purged or pending ones', async () => {
        const [a, b, c] = [nodeId(), nodeId(), nodeId()]
        const draining = nodeId()
        await store.recordHeartbeat(announcement(draining), new Date())
        const below = await liveFile([a])
        const at = await liveFile([a, b])
        const above = await liveFile([a, b, c])
        const none = await liveFile([])
        const drainedAt = await liveFile([a, draining])
        const drainedAbove = await liveFile([a, b, draining])
        const withVariant = await liveFile([a, b], { variants: [{ name: 'thumbnail', state: 'pending', reason: null }] })
        const thumb = readyVariant(withVariant.id, withVariant.blobKey, 'thumbnail')
        await store.setVariant(thumb, [a])
        const { deleted, expired, exhausted } = await deadFiles([a])
        const purged = await purgedFile()
        const pending = newId()
        await store.beginBlob(pending, new Date(Date.now() - MINUTE))
        await store.addReplica(pending, a)

        const mine = new Set([below, at, above, none, drainedAt, drainedAbove, withVariant, deleted, expired, exhausted, purged]
          .map((f) => f.blobKey).concat(thumb.blob!.key, pending))
        const listed = async () => {
          const work = await repl.listWork(2, 0, '', ALL, 0)
          assert.deepEqual(work.map((w) => w.key), byteSorted(work.map((w) => w.key)), 'in byte order')
          return new Map(work.filter((w) => mine.has(w.key)).map((w) => [w.key, normalized(w)]))
        }

        let work = await listed()
        assert.deepEqual(byteSorted([...work.keys()]), byteSorted([below, above, none, drainedAbove].map((f) => f.blobKey).concat(thumb.blob!.key)))
        assert.deepEqual(work.get(below.blobKey), { key: below.blobKey, size: below.size, sha256: below.sha256, nodeIds: [a] })
        assert.deepEqual(work.get(none.blobKey)?.nodeIds, [])
        assert.deepEqual(work.get(above.blobKey)?.nodeIds, byteSorted([a, b, c]))
        assert.deepEqual(work.get(thumb.blob!.key), { ...thumb.blob!, nodeIds: [a] })

        // a draining node's copy does not count: [a, draining] is now below 2
        assert.equal(await repl.setNodeDraining(draining, true), true)
        work = await listed()
        assert.deepEqual(work.get(drainedAt.blobKey)?.nodeIds, byteSorted([a, draining]), 'every replica is listed')
        assert.ok(work.has(drainedAbove.blobKey))
        assert.equal(work.has(at.blobKey), false)

        assert.equal(await repl.setNodeDraining(draining, false), true)
        assert.equal((await listed()).has(drainedAt.blobKey), false)
      })

      test('listWork: key order is byte order, after and limit page through it', async () => {
        // byte order: - 0 A Z _ a z (a linguistic collation would fold case and skip - and _)
        const keys = ['z', '_', 'A', 'a', '0', 'Z', '-'].map(keyStarting)
        for (const key of keys) await liveFile([], withKey(key))
        const sorted = byteSorted(keys)
        const mine = new Set(keys)

        const all = (await repl.listWork(2, 0, '', ALL, 0)).map((w) => w.key)
        assert.deepEqual(all.filter((k) => mine.has(k)), sorted)
        const fromThird = (await repl.listWork(2, 0, sorted[2]!, ALL, 0)).map((w) => w.key)
        assert.ok(fromThird.every((k) => k > sorted[2]!), 'only keys after `after`')
        assert.deepEqual(fromThird.filter((k) => mine.has(k)), sorted.slice(3))

        const paged: string[] = []
        for (let cursor = ''; ; ) {
          const page = await repl.listWork(2, 0, cursor, 2, 0)
          assert.ok(page.length <= 2)
          paged.push(...page.map((w) => w.key))
          if (page.length < 2) break
          cursor = page.at(-1)!.key
        }
        assert.deepEqual(paged, all)
        assert.equal((await repl.listWork(2, 0, '', 1, 0)).length, 1)
      })

      test('listWork: a blob younger than the min age is left out', async () => {
        const old = await liveFile([])
        const fresh = await store.createFile(newFile({ replicas: [] }))
        const keysAt = async (minAgeMs: number) => (await repl.listWork(2, 0, '', ALL, minAgeMs)).map((w) => w.key)
        const settled = await keysAt(30_000)
        assert.ok(settled.includes(old.blobKey))
        assert.equal(settled.includes(fresh.blobKey), false)
        const now = await keysAt(0)
        assert.ok(now.includes(old.blobKey) && now.includes(fresh.blobKey))
        assert.equal((await keysAt(2 * MINUTE)).includes(old.blobKey), false)
      })

      test('backlog counts live blobs below and above the factor, the bytes to copy, and those without a replica', async () => {
        const [a, b, c, d] = [nodeId(), nodeId(), nodeId(), nodeId()]
        const draining = nodeId()
        await store.recordHeartbeat(announcement(draining), new Date())
        assert.equal(await repl.setNodeDraining(draining, true), true)
        const before = await repl.backlog(3, 0)

        const size = (n: number) => withKey(newId(), n)
        await liveFile([a], size(100)) // below: 2 × 100
        await liveFile([], size(1000)) // below, none: 3 × 1000
        await liveFile([a, draining], size(10)) // below (one copy counts): 2 × 10
        await liveFile([a, b, draining], size(50)) // below (two count), 3 copies: not above
        await liveFile([a, b, c], size(5)) // at the factor
        await liveFile([a, b, c, d], size(7)) // above
        await liveFile([a, b, c, draining], size(9)) // above (4 copies), not below (3 count)
        await deadFiles([]) // dead: nothing
        const pending = newId()
        await store.beginBlob(pending, new Date(Date.now() - MINUTE))
        await store.addReplica(pending, a)

        const after = await repl.backlog(3, 0)
        assert.deepEqual(after, {
          blobsBelowFactor: before.blobsBelowFactor + 4,
          bytesToCopy: before.bytesToCopy + 200 + 3000 + 20 + 50,
          blobsAboveFactor: before.blobsAboveFactor + 2,
          blobsBelowZoneSpread: before.blobsBelowZoneSpread,
          blobsWithoutReplica: before.blobsWithoutReplica + 1,
        })
      })

      test('zone spread: a blob at its factor in fewer zones than asked is work, and counted', async () => {
        const zoned = async (zone: string) => {
          const id = nodeId()
          await store.recordHeartbeat({ ...announcement(id), zone }, new Date())
          return id
        }
        const [a1, a2, b1, c1] = [await zoned('a'), await zoned('a'), await zoned('b'), await zoned('c')]
        const before = await repl.backlog(2, 2)
        const narrow = await liveFile([a1, a2]) // at the factor, one zone
        const wide = await liveFile([a1, b1]) // two zones
        const three = await liveFile([a2, c1])
        const keysAt = async (zones: number) => new Set((await repl.listWork(2, zones, '', ALL, 0)).map((w) => w.key))
        const two = await keysAt(2)
        assert.ok(two.has(narrow.blobKey))
        assert.equal(two.has(wide.blobKey), false)
        assert.equal(two.has(three.blobKey), false)
        assert.equal((await keysAt(1)).has(narrow.blobKey), false, 'one zone is all that is asked')
        const after = await repl.backlog(2, 2)
        assert.equal(after.blobsBelowZoneSpread, before.blobsBelowZoneSpread + 1)
        assert.equal(after.blobsBelowFactor, before.blobsBelowFactor)
      })
    })

    describe('what nodes hold', () => {
      test('nodeUsage: replicas and bytes each node holds according to the metadata', async () => {
        const [x, y] = [nodeId(), nodeId()]
        await liveFile([x, y], withKey(newId(), 100))
        await liveFile([x], withKey(newId(), 250))
        const dead = await liveFile([x], withKey(newId(), 1000))
        await store.deleteFile(dead.id, new Date()) // dead but not purged: its bytes are still there
        const usage = await repl.nodeUsage()
        assert.deepEqual(usage.find((u) => u.nodeId === x), { nodeId: x, replicas: 3, bytes: 1350 })
        assert.deepEqual(usage.find((u) => u.nodeId === y), { nodeId: y, replicas: 1, bytes: 100 })
        assert.equal(usage.filter((u) => u.nodeId === x).length, 1)
      })

      test('listNodeBlobs: a node\'s blobs in byte order, with all their replicas and whether they are live', async () => {
        const [x, y, z] = [nodeId(), nodeId(), nodeId()]
        const live = await liveFile([x, y], withKey(keyStarting('a')))
        const alone = await liveFile([x], withKey(keyStarting('Z')))
        const { deleted, exhausted } = await deadFiles([])
        await store.addReplica(deleted.blobKey, x)
        await store.addReplica(exhausted.blobKey, x)
        await store.addReplica(exhausted.blobKey, z)
        const notOnX = await liveFile([y, z])
        const expected = [
          { key: live.blobKey, size: live.size, sha256: live.sha256, nodeIds: byteSorted([x, y]), live: true },
          { key: alone.blobKey, size: alone.size, sha256: alone.sha256, nodeIds: [x], live: true },
          { key: deleted.blobKey, size: deleted.size, sha256: deleted.sha256, nodeIds: [x], live: false },
          { key: exhausted.blobKey, size: exhausted.size, sha256: exhausted.sha256, nodeIds: byteSorted([x, z]), live: false },
        ].sort(byKey)

        const all = (await repl.listNodeBlobs(x, '', ALL)).map(normalized)
        assert.deepEqual(all, expected)
        const paged: (BlobPlacement & { live: boolean })[] = []
        for (let cursor = ''; ; ) {
          const page = await repl.listNodeBlobs(x, cursor, 3)
          paged.push(...page.map(normalized))
          if (page.length < 3) break
          cursor = page.at(-1)!.key
        }
        assert.deepEqual(paged, expected)
        assert.deepEqual((await repl.listNodeBlobs(x, expected[1]!.key, ALL)).map(normalized), expected.slice(2))
        assert.deepEqual(await repl.listNodeBlobs(nodeId(), '', ALL), [])

        // a pending blob recorded on a node is not live
        const pending = newId()
        await store.beginBlob(pending, new Date())
        await store.addReplica(pending, y)
        const onY = await repl.listNodeBlobs(y, '', ALL)
        assert.deepEqual(
          onY.map((b) => ({ key: b.key, live: b.live })),
          [{ key: live.blobKey, live: true }, { key: notOnX.blobKey, live: true }, { key: pending, live: false }].sort(byKey),
        )
      })

      test('a blob\'s createdAt is when its file was recorded, not when its upload began', async () => {
        const key = newId()
        await store.beginBlob(key, new Date(Date.now() - 10 * MINUTE))
        const recordedAt = new Date(Date.now() - MINUTE)
        await store.createFile(newFile({ blob: { key, size: 5, sha256: 'cd'.repeat(32) }, createdAt: recordedAt }))
        const fate = (await repl.describeBlobs([key])).get(key)
        assert.equal(fate?.kind, 'live')
        assert.equal(fate.kind === 'live' && fate.createdAt.getTime(), recordedAt.getTime())
      })

      test('describeBlobs: live with its replicas and createdAt, pending, dead, unknown', async () => {
        const [x, y] = [nodeId(), nodeId()]
        const createdAt = new Date(Date.now() - 5 * MINUTE)
        const live = await liveFile([y, x], { createdAt, variants: [{ name: 'thumbnail', state: 'pending', reason: null }] })
        const thumb = readyVariant(live.id, live.blobKey, 'thumbnail')
        await store.setVariant(thumb, [x])
        const pending = newId()
        await store.beginBlob(pending, new Date())
        const dying = await liveFile([x])
        assert.deepEqual((await repl.describeBlobs([dying.blobKey])).get(dying.blobKey)?.kind, 'live')
        await store.deleteFile(dying.id, new Date())
        const { expired, exhausted } = await deadFiles([x])
        const purged = await purgedFile()
        const unknown = newId()

        const keys = [live.blobKey, thumb.blob!.key, pending, dying.blobKey, expired.blobKey, exhausted.blobKey, purged.blobKey, unknown]
        const fates = await repl.describeBlobs(keys)
        assert.deepEqual(byteSorted([...fates.keys()]), byteSorted(keys))
        const liveFate = fates.get(live.blobKey)
        assert.ok(liveFate?.kind === 'live')
        assert.deepEqual(normalized(liveFate.blob), { key: live.blobKey, size: live.size, sha256: live.sha256, nodeIds: byteSorted([x, y]) })
        assert.equal(liveFate.createdAt.getTime(), createdAt.getTime())
        const thumbFate = fates.get(thumb.blob!.key)
        assert.ok(thumbFate?.kind === 'live')
        assert.deepEqual(thumbFate.blob, { ...thumb.blob!, nodeIds: [x] })
        assert.deepEqual(fates.get(pending), { kind: 'pending' })
        for (const f of [dying, expired, exhausted, purged]) assert.deepEqual(fates.get(f.blobKey), { kind: 'dead' }, f.id)
        assert.deepEqual(fates.get(unknown), { kind: 'unknown' })
        assert.equal((await repl.describeBlobs([])).size, 0)
      })
    })

    describe('fenced changes', () => {
      test('addReplica records a copy of a live blob (idempotently); false and nothing recorded when the blob is not live', async () => {
        const lease = await acquire(`repl-${newId()}`, 'a')
        const [x, y] = [nodeId(), nodeId()]
        const live = await liveFile([x])
        assert.equal(await repl.addReplica(live.blobKey, y, lease), true)
        assert.equal(await repl.addReplica(live.blobKey, y, lease), true)
        assert.deepEqual(await replicasOf(live.blobKey), byteSorted([x, y]))

        const { deleted, expired, exhausted } = await deadFiles([x])
        const purged = await purgedFile()
        const pending = newId()
        await store.beginBlob(pending, new Date())
        for (const key of [deleted.blobKey, expired.blobKey, exhausted.blobKey]) {
          assert.equal(await repl.addReplica(key, y, lease), false)
          assert.deepEqual(await replicasOf(key), [x])
        }
        for (const key of [purged.blobKey, pending, newId()]) {
          assert.equal(await repl.addReplica(key, y, lease), false)
          assert.deepEqual(await replicasOf(key), [])
        }
        await lease.release()
      })

      test('declareNodeLost drops the node\'s rows but a live blob\'s last one and sets lostAt; markNodeReconciled clears it', async () => {
        const lease = await acquire(`repl-${newId()}`, 'a')
        const [lost, other] = [nodeId(), nodeId()]
        await store.recordHeartbeat(announcement(lost), new Date())
        await store.recordHeartbeat(announcement(other), new Date())
        const shared = await liveFile([lost, other])
        const only = await liveFile([lost])
        const elsewhere = await liveFile([other])
        const dead = await liveFile([lost, other])
        await store.deleteFile(dead.id, new Date())
        // dead, its last copy on the lost node: the row goes, so the file can be purged while the node is away
        const deadOnly = await liveFile([lost])
        await store.deleteFile(deadOnly.id, new Date())
        const nodeOf = async (id: string) => (await store.listNodes()).find((n) => n.id === id)

        const started = Date.now()
        assert.equal(await repl.declareNodeLost(lost, lease), 3)
        assert.deepEqual(await replicasOf(deadOnly.blobKey), [])
        assert.deepEqual(await replicasOf(shared.blobKey), [other])
        assert.deepEqual(await replicasOf(only.blobKey), [lost], 'the last trace of where its bytes may be')
        assert.deepEqual(await replicasOf(elsewhere.blobKey), [other])
        assert.deepEqual(await replicasOf(dead.blobKey), [other])
        assert.deepEqual((await repl.listNodeBlobs(lost, '', ALL)).map((b) => b.key), [only.blobKey])
        const lostAt = (await nodeOf(lost))?.lostAt
        assert.ok(lostAt instanceof Date)
        assert.ok(Math.abs(lostAt.getTime() - started) < MINUTE)
        assert.equal((await nodeOf(other))?.lostAt, null)

        // again: nothing more to drop, and the first lostAt stays
        assert.equal(await repl.declareNodeLost(lost, lease), 0)
        assert.deepEqual((await nodeOf(lost))?.lostAt, lostAt)
        // it came back (a heartbeat after lostAt) and died before it was reconciled: lost anew, from now
        await store.recordHeartbeat(announcement(lost), new Date(lostAt.getTime() + 1000))
        assert.equal(await repl.declareNodeLost(lost, lease), 0)
        const lostAgain = (await nodeOf(lost))?.lostAt
        assert.ok(lostAgain instanceof Date && lostAgain.getTime() !== lostAt.getTime())

        const beforeReconcile = await nodeOf(lost)
        assert.deepEqual(beforeReconcile?.lostAt, lostAgain)
        assert.ok(beforeReconcile)
        await repl.markNodeReconciled(lost, lease)
        // (the heartbeat's age moves on between two reads)
        assert.deepEqual({ ...(await nodeOf(lost)), heartbeatAgeMs: 0 }, { ...beforeReconcile, lostAt: null, heartbeatAgeMs: 0 })
        assert.deepEqual(await replicasOf(only.blobKey), [lost])
        await lease.release()
      })
    })

    describe('operators', () => {
      test('setNodeDraining: true and visible for a known node, false for an unknown one', async () => {
        const id = nodeId()
        assert.equal(await repl.setNodeDraining(id, true), false)
        assert.equal((await store.listNodes()).some((n) => n.id === id), false, 'an unknown node is not created')
        await store.recordHeartbeat(announcement(id), new Date())
        assert.equal(await repl.setNodeDraining(id, true), true)
        assert.equal((await store.listNodes()).find((n) => n.id === id)?.draining, true)
        await store.recordHeartbeat(announcement(id), new Date())
        assert.equal((await store.listNodes()).find((n) => n.id === id)?.draining, true, 'a heartbeat keeps it')
        assert.equal(await repl.setNodeDraining(id, false), true)
        assert.equal((await store.listNodes()).find((n) => n.id === id)?.draining, false)
      })

      test('control documents: write, read, rewrite bumps the version, clear only the version read', async () => {
        const name = `control-${newId()}`
        assert.equal(await repl.readControl(name), null)
        await repl.writeControl(name, { requested: true, moves: [1, 2], note: 'ü' })
        const first = await repl.readControl(name)
        assert.ok(first)
        assert.deepEqual(first.value, { requested: true, moves: [1, 2], note: 'ü' })
        assert.ok(first.updatedAt instanceof Date)

        await repl.writeControl(name, 'second')
        const second = await repl.readControl(name)
        assert.ok(second)
        assert.equal(second.value, 'second')
        assert.ok(second.version > first.version)
        assert.ok(second.updatedAt.getTime() >= first.updatedAt.getTime())

        await repl.clearControl(name, first.version) // stale: someone rewrote it since
        assert.deepEqual(await repl.readControl(name), second)
        await repl.clearControl(name, second.version)
        assert.equal(await repl.readControl(name), null)
        await repl.clearControl(name, second.version) // idempotent

        await repl.writeControl(name, null)
        const third = await repl.readControl(name)
        assert.ok(third)
        assert.equal(third.value, null)
      })
    })

    describe('orphan copies', () => {
      test('held idempotently and fenced; listed in (node, key) byte order by pages; counted; decided by state and key; forgotten', async () => {
        const orphans = repl.orphans
        const fence = await acquire(`orphans-${newId()}`, 'manager')
        const [n1, n2] = byteSorted([nodeId(), nodeId()]) as [string, string]
        const keys = byteSorted(['A', 'b', 'Z', '_'].map(keyStarting))
        await orphans.hold(n1, keys.map((key, i) => ({ key, size: 100 + i })), fence)
        await orphans.hold(n2, [{ key: keys[0]!, size: 7 }], fence)
        await orphans.hold(n1, [{ key: keys[0]!, size: 999 }], fence) // held already: unchanged

        const onN1 = await orphans.onNode(n1)
        assert.deepEqual([...onN1.keys()].sort(), keys)
        assert.deepEqual({ ...onN1.get(keys[0]!)!, heldAt: null }, { nodeId: n1, key: keys[0], size: 100, state: 'held', heldAt: null })
        assert.ok(onN1.get(keys[0]!)!.heldAt instanceof Date)

        const mine = (c: { nodeId: string }) => c.nodeId === n1 || c.nodeId === n2
        const pages: string[] = []
        for (let after: { nodeId: string; key: string } | null = null; ; ) {
          const page = await orphans.list(after, 2)
          pages.push(...page.filter(mine).map((c) => `${c.nodeId}/${c.key}`))
          if (page.length < 2) break
          after = { nodeId: page.at(-1)!.nodeId, key: page.at(-1)!.key }
        }
        assert.deepEqual(pages, [...keys.map((k) => `${n1}/${k}`), `${n2}/${keys[0]}`])
        const counts = (await orphans.counts()).filter(mine)
        assert.deepEqual(counts, [
          { nodeId: n1, state: 'held', copies: 4, bytes: 100 + 101 + 102 + 103 },
          { nodeId: n2, state: 'held', copies: 1, bytes: 7 },
        ])

        // an operator keeps one blob's copies (on both nodes), then releases what is held
        assert.equal(await orphans.decide(['held'], 'kept', [keys[0]!]), 2)
        assert.equal(await orphans.decide(['held'], 'kept', [keys[0]!]), 0, 'idempotent')
        assert.ok((await orphans.decide(['held'], 'released', null)) >= 3)
        const decided = await orphans.onNode(n1)
        assert.deepEqual(keys.map((k) => decided.get(k)?.state), ['kept', 'released', 'released', 'released'])

        // a stale fence changes nothing
        const stale = { name: fence.name, token: fence.token - 1 }
        await assert.rejects(orphans.hold(n1, [{ key: keyStarting('q'), size: 1 }], stale), LeaseLost)
        await assert.rejects(orphans.forget(n1, keys, stale), LeaseLost)
        assert.equal((await orphans.onNode(n1)).size, 4)

        await orphans.forget(n1, keys.slice(1), fence)
        await orphans.forget(n1, keys.slice(1), fence) // idempotent
        assert.deepEqual([...(await orphans.onNode(n1)).keys()], [keys[0]])
        assert.equal((await orphans.onNode(n2)).size, 1, 'another node\'s copies stay')
      })
    })
  })
}

replicationContract('pglite', async () => {
  const store = await createEmbeddedMetadataStore({ dataDir: 'memory://', log: silent })
  return { store, cleanup: () => store.close() }
})

replicationContract('postgresql', async () => {
  const db = await createTestDatabase()
  const store = await createPostgresMetadataStore({ url: db.url, log: silent })
  return {
    store,
    async cleanup() {
      await store.close()
      await db.drop()
    },
  }
})
