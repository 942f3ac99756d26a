// The repair phase: a cluster of four storage nodes is filled until one
// node holds `gib` GiB in a few thousand files; that node is killed (SIGKILL)
// while user traffic (uploads and checked downloads) runs; the phase measures
// how long the replication manager takes to declare it lost and to restore
// the factor on the other three, the copy rate, and what the traffic's
// latency did before and during the repair.
//
// "Restored" means: every blob the killed node held has its factor again.
// That set is read from the metadata database (mode real), because the
// cluster-wide backlog is never quite zero while uploads run (an upload's
// last copy is recorded a moment after its answer).
import { readFile } from 'node:fs/promises'
import pg from 'pg'
import { createClient, expectStatus, readChecked, runPhase } from './load.ts'
import type { MayflyCluster } from './mayfly.ts'
import { multipartBody } from './multipart.ts'
import { quantile, KiB, MiB } from './stats.ts'
import { makePayload } from './target.ts'

const GiB = 1024 * MiB
const FILE_BYTES = 384 * KiB
const TRAFFIC_FILE_BYTES = 64 * KiB
const TRAFFIC_CONCURRENCY = 4
const BASELINE_MS = 10_000

export interface TrafficStats {
  ops: number
  errors: number
  opsPerSec: number
  p50Ms: number
  p99Ms: number
}

export interface RepairResult {
  files: number
  lostNode: { id: string; zone: string; replicas: number; bytes: number }
  capMiBPerSec: number
  /** kill -> declared lost (MAYFLY_NODE_DOWN_AFTER_SECONDS and the probe) */
  detectSeconds: number
  /** declared lost -> every blob at its factor again */
  repairSeconds: number
  copiedBytes: number
  copyMiBPerSec: number
  traffic: { before: TrafficStats; during: TrafficStats }
}

interface NodeJson {
  id: string
  zone: string
  url: string
  lost_at: string | null
  replicas: number
  replica_bytes: number
}

interface ClusterJson {
  replication: { blobs_below_factor: number | null; manager: { active: boolean; copied_bytes?: number } }
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url)
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}`)
  return (await res.json()) as T
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number, intervalMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`repair phase: timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** The pid of the `mayfly up` child serving the storage node on `port`. */
async function nodePid(upPid: number, port: number): Promise<number> {
  const children = (await readFile(`/proc/${upPid}/task/${upPid}/children`, 'utf8')).trim().split(/\s+/).map(Number)
  for (const pid of children) {
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')
    if (environ.split('\0').includes(`MAYFLY_PORT=${port}`)) return pid
  }
  throw new Error(`no child of ${upPid} serves port ${port}`)
}

function stats(samples: { ms: number; ok: boolean }[], seconds: number): TrafficStats {
  const ok = samples.filter((s) => s.ok).map((s) => s.ms)
  return {
    ops: ok.length,
    errors: samples.length - ok.length,
    opsPerSec: ok.length / Math.max(0.001, seconds),
    p50Ms: quantile(ok, 0.5),
    p99Ms: quantile(ok, 0.99),
  }
}

export async function measureRepair(cluster: MayflyCluster, o: { gib: number; capMiBPerSec: number; log: (line: string) => void }): Promise<RepairResult> {
  const { url } = cluster
  const { log } = o
  const nodes = cluster.nodePorts.length
  // a node holds factor/nodes of everything: fill until the fullest one holds `gib`
  const files = Math.ceil((o.gib * GiB * nodes) / 3 / FILE_BYTES)
  const fill = makePayload('repair', FILE_BYTES)
  const form = multipartBody(fill.data, 'repair.bin', 'application/octet-stream')
  log(`  repair: filling ${nodes} nodes with ${files} files of ${FILE_BYTES / KiB} KiB`)
  const filled = await runPhase({
    concurrency: 8,
    durationMs: 3_600_000,
    maxOps: files,
    bytesPerOp: FILE_BYTES,
    op: async () => void (await cluster.upload(form.contentType, form.body, form.body.length)),
  })
  if (filled.errors > 0) throw new Error(`repair phase: ${filled.errors} fill uploads failed: ${filled.errorSamples.join('; ')}`)
  log(`  repair: filled in ${filled.seconds.toFixed(1)} s (${filled.mibPerSec.toFixed(1)} MiB/s)`)
  await until('the last copies of the fill', async () => (await getJson<ClusterJson>(`${url}/api/cluster`)).replication.blobs_below_factor === 0, 120_000)

  const before = await getJson<{ nodes: NodeJson[] }>(`${url}/api/nodes`)
  const victim = before.nodes.reduce((a, b) => (b.replica_bytes > a.replica_bytes ? b : a))
  const victimPid = await nodePid(cluster.pid, Number(new URL(victim.url).port))
  const lostBlobs = await lostBlobTracker(cluster, victim.id)

  // user traffic: uploads of small files and checked downloads of them, all through the repair
  const client = createClient(TRAFFIC_CONCURRENCY)
  const small = makePayload('traffic', TRAFFIC_FILE_BYTES)
  const smallForm = multipartBody(small.data, 'traffic.bin', 'application/octet-stream')
  const ids: string[] = []
  const samples: { at: number; ms: number; ok: boolean }[] = []
  let running = true
  const user = async (n: number) => {
    for (let i = 0; running; i++) {
      const t0 = performance.now()
      let ok = true
      try {
        if (ids.length < 20 || (n + i) % 2 === 0) {
          ids.push((await cluster.upload(smallForm.contentType, smallForm.body, smallForm.body.length)).id)
        } else {
          const id = ids[Math.floor(Math.random() * ids.length)]!
          const res = await client.request({ origin: url, path: `/api/download/${id}`, method: 'GET' })
          await expectStatus(res, [200], 'download')
          await readChecked(res.body, small.size, i % 10 === 0 ? small.sha256 : null)
        }
      } catch {
        ok = false
      }
      samples.push({ at: Date.now(), ms: performance.now() - t0, ok })
    }
  }
  const traffic = Promise.all(Array.from({ length: TRAFFIC_CONCURRENCY }, (_, n) => user(n)))
  try {
    const baselineStart = Date.now()
    await new Promise((r) => setTimeout(r, BASELINE_MS))
    log(`  repair: killing ${victim.id} (zone ${victim.zone}, ${victim.replicas} copies, ${(victim.replica_bytes / GiB).toFixed(2)} GiB)`)
    const copiedBefore = await copiedBytes(url)
    const killedAt = Date.now()
    process.kill(victimPid, 'SIGKILL')
    await until('the node declared lost', async () => {
      const n = (await getJson<{ nodes: NodeJson[] }>(`${url}/api/nodes`)).nodes.find((x) => x.id === victim.id)
      return n?.lost_at != null
    }, 600_000, 100)
    const lostAt = Date.now()
    log(`  repair: declared lost after ${((lostAt - killedAt) / 1000).toFixed(1)} s; copying`)
    await until('the factor restored', async () => (await lostBlobs.belowFactor()) === 0, 3_600_000, 100)
    const restoredAt = Date.now()
    // the manager publishes its counters every second
    await new Promise((r) => setTimeout(r, 1500))
    // copies caused by the loss: the lost node's blobs, and uploads that had a copy on it in flight
    const copied = (await copiedBytes(url)) - copiedBefore
    running = false
    await traffic
    const repairSeconds = (restoredAt - lostAt) / 1000
    const window = (from: number, to: number) => samples.filter((s) => s.at >= from && s.at < to)
    return {
      files,
      lostNode: { id: victim.id, zone: victim.zone, replicas: victim.replicas, bytes: victim.replica_bytes },
      capMiBPerSec: o.capMiBPerSec,
      detectSeconds: (lostAt - killedAt) / 1000,
      repairSeconds,
      copiedBytes: copied,
      copyMiBPerSec: copied / MiB / repairSeconds,
      traffic: {
        before: stats(window(baselineStart, killedAt), (killedAt - baselineStart) / 1000),
        during: stats(window(lostAt, restoredAt), repairSeconds),
      },
    }
  } finally {
    running = false
    await traffic
    await client.close()
    await lostBlobs.close()
  }
}

async function copiedBytes(url: string): Promise<number> {
  return (await getJson<ClusterJson>(`${url}/api/cluster`)).replication.manager.copied_bytes ?? 0
}

/**
 * How many of the blobs recorded on `nodeId` now are below the factor
 * (counting copies on other nodes). Mode real: from the metadata database;
 * embedded (no database to ask): the cluster-wide count, which new uploads
 * keep above zero for moments.
 */
async function lostBlobTracker(cluster: MayflyCluster, nodeId: string): Promise<{ belowFactor(): Promise<number>; close(): Promise<void> }> {
  if (cluster.databaseUrl === null) {
    return {
      belowFactor: async () => (await getJson<ClusterJson>(`${cluster.url}/api/cluster`)).replication.blobs_below_factor ?? 1,
      close: async () => undefined,
    }
  }
  const db = new pg.Client({ connectionString: cluster.databaseUrl })
  await db.connect()
  const keys = (await db.query<{ blob_key: string }>('SELECT blob_key FROM replicas WHERE node_id = $1', [nodeId])).rows.map((r) => r.blob_key)
  return {
    async belowFactor() {
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM unnest($1::text[]) AS k(key)
         WHERE (SELECT count(*) FROM replicas r WHERE r.blob_key = k.key AND r.node_id <> $2) < 3`,
        [keys, nodeId],
      )
      return rows[0]?.n ?? 0
    },
    close: () => db.end(),
  }
}

export function formatRepair(r: RepairResult): string {
  const t = (s: TrafficStats) =>
    `${s.opsPerSec.toFixed(1)} ops/s, p50 ${s.p50Ms.toFixed(1)} ms, p99 ${s.p99Ms.toFixed(1)} ms, ${s.errors} errors`
  return [
    `Repair: a node holding ${(r.lostNode.bytes / GiB).toFixed(2)} GiB in ${r.lostNode.replicas} copies killed (${r.files} files on 4 nodes), cap ${r.capMiBPerSec} MiB/s`,
    `  declared lost after ${r.detectSeconds.toFixed(1)} s; factor restored ${r.repairSeconds.toFixed(1)} s later`,
    `  copied ${(r.copiedBytes / GiB).toFixed(2)} GiB at ${r.copyMiBPerSec.toFixed(1)} MiB/s`,
    `  user traffic before: ${t(r.traffic.before)}`,
    `  user traffic during: ${t(r.traffic.during)}`,
  ].join('\n')
}
