// Blobs on the storage nodes that the metadata does not know (issue 9,
// backups): after a restore of the metadata to an earlier time, every blob
// uploaded since is such a blob, and the replication manager must not turn
// that into mass deletion without an operator saying so. With real storage
// node processes and the manager on short timings, in both modes:
//   - many unknown blobs on one node: none is deleted (held, shown in
//     /api/cluster, `mayfly status` and `mayfly orphans list`) until the
//     operator keeps some and deletes the rest; then exactly those go;
//   - a few are deleted after their grace, as before; under a hold (a
//     restore's, or `mayfly orphans hold`) even a few are held;
//   - nodes that saw lease tokens the (restored) store never issued do not
//     fence the new manager out: its deletes are accepted.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, test } from 'node:test'
import { newId } from '../../src/core/ids.ts'
import { replicatorOptions } from '../../src/cli/services.ts'
import { createLogger } from '../../src/log.ts'
import { startReplicationManager } from '../../src/services/replicator/manager.ts'
import { startCluster, type Cluster, type Mode } from '../helpers/cluster.ts'
import { getJson, sha256, upload } from '../helpers/http.ts'
import { runMayfly } from '../helpers/mayfly-process.ts'
import { assertFilesRead, assertInventoryMatches, FAST_MEMBERSHIP, waitForFactor } from '../helpers/replication.ts'
import type { StorageNodeProcess } from '../helpers/storage-node-process.ts'
import { waitFor } from '../helpers/wait.ts'

/** above this many due at once on one node, the manager holds them */
const HOLD_ABOVE = 10

const ENV = {
  ...FAST_MEMBERSHIP,
  MAYFLY_ORPHAN_GRACE_SECONDS: '1',
  MAYFLY_AUDIT_INTERVAL_SECONDS: '1',
  MAYFLY_ORPHAN_HOLD_ABOVE: String(HOLD_ABOVE),
}

interface OrphansJson {
  hold: { reason: string; since: string; detail: string } | null
  held: number
  kept: number
  released: number
}

async function orphansOf(c: Cluster): Promise<OrphansJson> {
  const res = await getJson(`${c.url}/api/cluster`, { headers: { authorization: `Bearer ${c.secret}` } })
  assert.equal(res.status, 200)
  return (res.body.replication as { orphans: OrphansJson }).orphans
}

/** Puts `count` blobs on the node that no metadata knows: what a restored store does not know of. */
async function strayBlobs(c: Cluster, node: StorageNodeProcess, count: number): Promise<string[]> {
  const keys: string[] = []
  for (let i = 0; i < count; i++) {
    const key = newId()
    await c.infra.client.put(node.url, key, randomBytes(4096 + i))
    keys.push(key)
  }
  return keys.sort()
}

async function heldOn(c: Cluster, node: StorageNodeProcess): Promise<Set<string>> {
  const keys = new Set<string>()
  for (let after: string | null = ''; after !== null; ) {
    const page = await c.infra.client.list(node.url, { after, limit: 1000 })
    for (const b of page.blobs) keys.add(b.key)
    after = page.next
  }
  return keys
}

async function uploadFiles(c: Cluster, count: number): Promise<Map<string, string>> {
  const files = new Map<string, string>()
  for (let i = 0; i < count; i++) {
    const data = randomBytes(8192)
    const res = await upload(c.url, data)
    assert.equal(res.status, 201, JSON.stringify(res.body))
    files.set(String(res.body.id), sha256(data))
  }
  return files
}

const cli = (c: Cluster, args: string[]) => runMayfly([...args, '--url', c.url], { env: { MAYFLY_CLUSTER_SECRET: c.secret } })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

for (const mode of ['embedded', 'real'] as Mode[]) {
  describe(`unknown blobs on the nodes are held, not mass-deleted (${mode})`, { timeout: 180_000 }, () => {
    const clusters: Cluster[] = []
    after(async () => {
      for (const c of clusters) await c.close()
    })
    async function cluster(replicator = true) {
      const c = await startCluster({ mode, replicator, worker: false, env: ENV })
      clusters.push(c)
      return c
    }

    test('many on one node: none deleted until the operator keeps some and deletes the rest; then exactly those go', async () => {
      const c = await cluster()
      const files = await uploadFiles(c, 3)
      await waitForFactor(c)
      const node = c.nodes[0]!
      const stray = await strayBlobs(c, node, HOLD_ABOVE + 15)

      const held = await waitFor('the unknown copies held', async () => {
        const o = await orphansOf(c)
        return o.held === stray.length ? o : undefined
      }, 20_000)
      assert.equal(held.hold?.reason, 'many')
      // several grace periods and audits later, every one is still there
      await sleep(4000)
      const onNode = await heldOn(c, node)
      for (const key of stray) assert.ok(onNode.has(key), `held copy ${key} is still on the node`)
      assert.equal((await orphansOf(c)).held, stray.length)

      const list = await cli(c, ['orphans', 'list', '--json'])
      assert.equal(list.code, 0, list.stderr)
      const listed = JSON.parse(list.stdout) as { copies: { node_id: string; key: string; state: string }[] }
      assert.deepEqual(listed.copies.map((x) => x.key).sort(), stray)
      assert.ok(listed.copies.every((x) => x.node_id === node.id && x.state === 'held'))
      const status = await cli(c, ['status'])
      assert.equal(status.code, 0, status.stderr)
      assert.match(status.stdout, new RegExp(`unknown blobs: ${stray.length} copies held .*HOLD \\(many`))

      const kept = stray.slice(0, 3)
      const keep = await cli(c, ['orphans', 'keep', ...kept])
      assert.equal(keep.code, 0, keep.stderr)
      assert.match(keep.stderr, /kept 3 copies/)
      const del = await cli(c, ['orphans', 'delete'])
      assert.equal(del.code, 0, del.stderr)
      assert.match(del.stderr, new RegExp(`released ${stray.length - 3} copies.*the hold is lifted`))
      assert.match(del.stderr, /all released copies are deleted/)
      const after = await heldOn(c, node)
      for (const key of stray) assert.equal(after.has(key), kept.includes(key), `copy ${key} ${kept.includes(key) ? 'kept' : 'deleted'}`)
      const o = await orphansOf(c)
      assert.deepEqual({ hold: o.hold, held: o.held, kept: o.kept, released: o.released }, { hold: null, held: 0, kept: 3, released: 0 })
      // kept for good: audits come and go
      await sleep(3000)
      for (const key of kept) assert.ok((await heldOn(c, node)).has(key), `kept copy ${key} stays`)

      // a kept copy goes only when named
      const named = await cli(c, ['orphans', 'delete', ...kept])
      assert.equal(named.code, 0, named.stderr)
      await assertInventoryMatches(c, node)
      await assertFilesRead(c, files)
    })

    test('a few are deleted after their grace; under a hold even a few are held until released', async () => {
      const c = await cluster()
      const node = c.nodes[1]!
      const few = await strayBlobs(c, node, 3)
      await waitFor('a few unknown copies deleted after the grace', async () => {
        const onNode = await heldOn(c, node)
        return few.every((k) => !onNode.has(k)) ? true : undefined
      }, 20_000)
      assert.equal((await orphansOf(c)).held, 0)

      // what a restore's hold does (scripts/pg-backup.sh restore writes the same document; here an operator)
      const hold = await cli(c, ['orphans', 'hold'])
      assert.equal(hold.code, 0, hold.stderr)
      const more = await strayBlobs(c, node, 3)
      const held = await waitFor('a few held under the hold', async () => {
        const o = await orphansOf(c)
        return o.held === 3 ? o : undefined
      }, 20_000)
      assert.equal(held.hold?.reason, 'operator')
      await sleep(3000)
      const onNode = await heldOn(c, node)
      assert.ok(more.every((k) => onNode.has(k)), 'none deleted under the hold')
      const del = await cli(c, ['orphans', 'delete'])
      assert.equal(del.code, 0, del.stderr)
      await assertInventoryMatches(c, node)
    })

    test('nodes that saw lease tokens the store never issued (a restore) do not fence the new manager out', async () => {
      const c = await cluster(false)
      const leaseName = `${c.config.MAYFLY_NAMESPACE}:replicator`
      // the history a restore lost: fifty reigns the nodes saw and the store no longer has
      for (const n of c.nodes) await c.infra.client.delete(n.url, newId(), { fence: { name: leaseName, token: 50 } })
      const node = c.nodes[2]!
      const few = await strayBlobs(c, node, 2)
      const manager = startReplicationManager(replicatorOptions(c.config, createLogger(process.env.MAYFLY_TEST_LOG_LEVEL ?? 'silent'), c.infra))
      try {
        await waitFor('the new manager deleted the unknown copies (its fenced deletes accepted)', async () => {
          const onNode = await heldOn(c, node)
          return few.every((k) => !onNode.has(k)) ? true : undefined
        }, 15_000)
        assert.ok(manager.leading())
      } finally {
        await manager.stop()
      }
    })
  })
}
