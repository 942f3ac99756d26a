// The restore drill (issue 9, backups): a Mayfly cluster on the three Patroni
// members of scripts/patroni-ha.sh, whose WAL every member archives; a base
// backup (scripts/pg-backup.sh backup); files A uploaded and downloaded; a
// restore point noted; files B uploaded. Then the metadata is restored to the
// restore point into a fresh PostgreSQL (scripts/pg-backup.sh restore) and a
// Mayfly cluster on the same storage nodes is pointed at it: every file of A
// is there with its bytes, limit and count; no file of B is known, and the
// replication manager holds B's blobs (the restored store does not know them)
// instead of deleting them, until an operator says so. It prints the restore
// time, the RTO (the restore command to the first download served) and the
// RPO (what was lost of what was acknowledged before the restore point).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { getJson, sha256, upload } from '../helpers/http.ts'
import { ROOT } from '../helpers/mayfly-process.ts'
import { startPatroniHa, type PatroniHa } from '../helpers/patroni-ha.ts'
import { waitFor } from '../helpers/wait.ts'

const run = promisify(execFile)
const BACKUP = join(ROOT, 'scripts', 'pg-backup.sh')

interface Uploaded {
  id: string
  sha256: string
  blobKey: string
  maxDownloads: number | null
  /** downloads counted before the restore point */
  downloads: number
}

async function uploadSet(cluster: Cluster, count: number, limited: (i: number) => number | null): Promise<Uploaded[]> {
  const out: Uploaded[] = []
  for (let i = 0; i < count; i++) {
    const data = randomBytes(16 * 1024 + i)
    const max = limited(i)
    const res = await upload(cluster.url, data, max === null ? {} : { max_downloads: String(max) }, `f${i}.bin`)
    assert.equal(res.status, 201, JSON.stringify(res.body))
    const id = String(res.body.id)
    out.push({ id, sha256: sha256(data), blobKey: (await cluster.infra.metadata.getFile(id))!.blobKey, maxDownloads: max, downloads: 0 })
  }
  return out
}

async function download(cluster: Cluster, id: string): Promise<{ status: number; sha256: string }> {
  const res = await fetch(`${cluster.url}/api/download/${id}`)
  return { status: res.status, sha256: sha256(Buffer.from(await res.arrayBuffer())) }
}

describe('restore drill: PostgreSQL back to a point in time, Mayfly on the same nodes', { timeout: 240_000 }, () => {
  let ha: PatroniHa | undefined
  const clusters: Cluster[] = []
  const dirs: string[] = []
  let restoredInto: string | undefined
  after(async () => {
    for (const c of clusters) await c.close().catch(() => undefined)
    if (restoredInto !== undefined) await run('sh', [BACKUP, 'stop-restored', restoredInto]).catch(() => undefined)
    await ha?.stop()
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  test('every file acknowledged before the restore point is back with its bytes, limit and count; later ones are unknown and their blobs held', async () => {
    ha = await startPatroniHa()
    const url = await ha.database()
    const database = new URL(url.replace(/@[^/]*\//, '@h/')).pathname.slice(1)
    const nodeDirs: string[] = []
    for (const z of ['a', 'b', 'c']) nodeDirs.push(await mkdtemp(join(tmpdir(), `mayfly-drill-node-${z}-`)))
    dirs.push(...nodeDirs)
    const env = { MAYFLY_ORPHAN_GRACE_SECONDS: '1', MAYFLY_AUDIT_INTERVAL_SECONDS: '1' }

    const before = await startCluster({ mode: 'real', worker: false, replicator: true, nodeDirs, env: { ...env, MAYFLY_DATABASE_URL: url } })
    clusters.push(before)
    // a file before the base backup, then the backup: A's later files come back through the WAL archive
    const early = await uploadSet(before, 2, () => null)
    const backup = await run('sh', [BACKUP, 'backup', ha.dir], { timeout: 120_000 })
    assert.match(backup.stdout.trim(), /^\d{8}T\d{6}Z$/, backup.stderr)
    const a = [...early, ...(await uploadSet(before, 6, (i) => (i % 2 === 0 ? 3 : null)))]
    // counted downloads: a limited link's claim commits before its bytes go; an unlimited one's count is batched
    for (const f of a.slice(0, 5)) {
      const got = await download(before, f.id)
      assert.equal(got.status, 200)
      f.downloads = 1
    }
    await waitFor('the counts of A recorded', async () => {
      for (const f of a) if ((await before.infra.metadata.getFile(f.id))!.downloads !== f.downloads) return undefined
      return true
    }, 10_000)
    await new Promise((r) => setTimeout(r, 50))
    const restorePoint = new Date().toISOString()
    await new Promise((r) => setTimeout(r, 50))

    const b = await uploadSet(before, 5, () => null)
    await download(before, a[1]!.id) // counted after the restore point: not restored
    await before.close()
    clusters.length = 0

    // restore into a fresh server, then Mayfly on the same nodes
    const restoreStarted = Date.now()
    restoredInto = join(ha.dir, 'restored')
    const restored = await run('sh', [BACKUP, 'restore', ha.dir, restorePoint, restoredInto, database], { timeout: 120_000 })
    const restoreMs = Date.now() - restoreStarted
    const restoredUrl = /^MAYFLY_DATABASE_URL=(\S+)$/m.exec(restored.stdout)?.[1]
    assert.ok(restoredUrl !== undefined, `restore printed no url: ${restored.stdout} ${restored.stderr}`)
    const after = await startCluster({ mode: 'real', worker: false, replicator: true, nodeDirs, env: { ...env, MAYFLY_DATABASE_URL: restoredUrl } })
    clusters.push(after)
    // a limited link: its claim is counted at once (an unlimited one's count is batched)
    const limited = a.find((f) => f.maxDownloads !== null && f.downloads > 0)!
    const first = await download(after, limited.id)
    const rtoMs = Date.now() - restoreStarted
    assert.equal(first.status, 200)
    assert.equal(first.sha256, limited.sha256)
    limited.downloads++

    let lost = 0
    for (const f of a) {
      const info = await getJson(`${after.url}/api/files/${f.id}`)
      if (info.status !== 200) {
        lost++
        continue
      }
      assert.equal(info.body.downloads, f.downloads, `downloads of ${f.id}`)
      assert.equal(info.body.max_downloads, f.maxDownloads, `limit of ${f.id}`)
      const got = await download(after, f.id)
      assert.equal(got.status, 200, `download of ${f.id}`)
      assert.equal(got.sha256, f.sha256, `bytes of ${f.id}`)
      f.downloads++
    }
    assert.equal(lost, 0, `${lost} of ${a.length} files acknowledged before the restore point are missing`)
    // a limited link keeps its limit across the restore: 3 in all, counting those before it
    while (limited.downloads < limited.maxDownloads!) {
      assert.equal((await download(after, limited.id)).status, 200)
      limited.downloads++
    }
    assert.equal((await download(after, limited.id)).status, 410)
    for (const f of b) {
      assert.equal((await getJson(`${after.url}/api/files/${f.id}`)).status, 404, `file ${f.id} of B is unknown`)
      assert.equal((await download(after, f.id)).status, 404)
    }

    // B's blobs: on every node, unknown to the restored metadata, held (the restore's hold) and not deleted
    const orphans = async () => {
      const res = await getJson(`${after.url}/api/cluster`, { headers: { authorization: `Bearer ${after.secret}` } })
      return (res.body.replication as { orphans: { hold: { reason: string } | null; held: number } }).orphans
    }
    const copies = b.length * after.nodes.length
    await waitFor('the copies of B held', async () => ((await orphans()).held === copies ? true : undefined), 20_000)
    assert.equal((await orphans()).hold?.reason, 'restored')
    await new Promise((r) => setTimeout(r, 3000)) // grace periods and audits of 1 s
    for (const node of after.nodes) {
      const page = await after.infra.client.list(node.url, { limit: 10_000 })
      const onNode = new Set(page.blobs.map((x) => x.key))
      for (const f of b) assert.ok(onNode.has(f.blobKey), `B's blob ${f.blobKey} still on node ${node.id}`)
    }

    // PostgreSQL's own word on where it stopped: the first commit it left out
    const stopped = /recovery stopped before commit of transaction \d+, time ([^)]+)\)/.exec(restored.stderr)?.[1]
    const leftOutAfterMs = stopped === undefined ? null : new Date(stopped.replace(' ', 'T').replace(/\+00$/, 'Z')).getTime() - Date.parse(restorePoint)
    console.log(
      `restore drill: restore ${(restoreMs / 1000).toFixed(1)} s; RTO (restore command to the first download served) ${(rtoMs / 1000).toFixed(1)} s; ` +
        `RPO: ${lost} of ${a.length} files acknowledged before the restore point lost, ${b.length} uploaded after it not restored (as asked)` +
        `${leftOutAfterMs === null ? '' : `; the first commit left out came ${leftOutAfterMs} ms after the restore point`}`,
    )
  })
})
