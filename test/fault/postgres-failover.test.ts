// The PostgreSQL primary fails under load (issue 9; DESIGN §5 invariant 7):
// a Mayfly cluster on the three Patroni members of scripts/patroni-ha.sh,
// through libpq's multi-host url, under uploads, downloads and downloads of
// limited links, while the leader's postmaster is killed, the leader's
// Patroni is killed (its postmaster lives on as an orphan primary), the
// leader is frozen past the ttl and resumed, and a planned switchover runs.
// Each time: no client error (requests wait instead), every acknowledged
// upload there with its bytes, no limited link served more than its limit
// and every one served exactly its limit in the end, and uploads resume
// within about a second of the new primary taking writes. One topology
// serves all of them (heal() between), each test a database of its own.
// Also: what /api/cluster, /metrics and `mayfly status` say of the tier,
// reads on a read replica whose replay is paused, and two replication
// managers across a primary kill in the middle of a repair.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import pg from 'pg'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { getJson, sha256, upload } from '../helpers/http.ts'
import { CONTROL_DOCUMENTS, type ReplicatorStatus } from '../../src/core/replication.ts'
import { runMayfly, spawnMayfly, waitForOutput, type MayflyProcess } from '../helpers/mayfly-process.ts'
import { assertFilesRead, FAST_MEMBERSHIP, nodeHoldingMost, uploadRandomFiles, waitForFactor, waitForLost } from '../helpers/replication.ts'
import { longestGap, startMixedLoad } from '../helpers/load.ts'
import { startPatroniHa, type MemberName, type PatroniHa } from '../helpers/patroni-ha.ts'
import { waitFor } from '../helpers/wait.ts'

/** downloads each limited link allows */
const LIMIT = 6
/** how long uploads may stop after the new primary takes writes: the bound of DESIGN §5.7 plus this machine's slack */
const RESUME_BOUND_MS = 2000

/** the status routes answer holders of the cluster secret */
const asCluster = (cluster: Cluster) => ({ headers: { authorization: `Bearer ${cluster.secret}` } })

interface LimitedHammer {
  /** 200s per file id */
  served: Map<string, number>
  errors: string[]
  stop(): Promise<void>
}

/** Clients that download limited links over and over until each answers 410. */
function hammerLimited(base: string, ids: string[], clientsPerFile = 2): LimitedHammer {
  const served = new Map(ids.map((id) => [id, 0]))
  const errors: string[] = []
  let stopped = false
  const client = async (id: string) => {
    while (!stopped) {
      const res = await fetch(`${base}/api/download/${id}`).catch((err: Error) => err)
      if (res instanceof Error) {
        errors.push(`limited ${id}: ${res.message}`)
        await new Promise((resolve) => setTimeout(resolve, 150))
        continue
      }
      const body = await res.arrayBuffer()
      if (res.status === 200) served.set(id, served.get(id)! + 1)
      else if (res.status === 410) return
      else errors.push(`limited ${id}: ${res.status} ${Buffer.from(body).toString().slice(0, 200)}`)
      await new Promise((resolve) => setTimeout(resolve, 150))
    }
  }
  const running = Promise.all(ids.flatMap((id) => Array.from({ length: clientsPerFile }, () => client(id))))
  return {
    served,
    errors,
    async stop() {
      stopped = true
      await running
    },
  }
}

/**
 * One client downloading files whose entries are cached, over and over:
 * `stalledMs`, the time spent in gaps over 300 ms between its downloads.
 */
function readCached(base: string, ids: string[]): { stop(): Promise<{ stalledMs: number; errors: string[] }> } {
  let stopped = false
  let stalledMs = 0
  const errors: string[] = []
  const running = (async () => {
    let last = Date.now()
    for (let n = 0; !stopped; n++) {
      const res = await fetch(`${base}/api/download/${ids[n % ids.length]!}`).catch((err: Error) => err)
      if (res instanceof Error) errors.push(res.message)
      else {
        await res.arrayBuffer()
        if (res.status !== 200) errors.push(`status ${res.status}`)
      }
      const now = Date.now()
      if (now - last > 300) stalledMs += now - last
      last = now
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()
  return {
    async stop() {
      stopped = true
      await running
      return { stalledMs, errors }
    },
  }
}

describe('PostgreSQL failover under load (three Patroni members)', { timeout: 900_000 }, () => {
  let ha: PatroniHa
  before(async () => {
    ha = await startPatroniHa()
  })
  after(async () => {
    await ha?.stop()
  })

  /**
   * A cluster on a database of its own, under load; `fault` breaks the
   * primary and returns when (and which) new member took writes, or null
   * when the primary stays where it is; then the checks.
   */
  async function survive(
    what: string,
    fault: (leader: MemberName, cluster: Cluster) => Promise<{ name: MemberName; at: number } | null>,
    floorMs: number,
    via: 'members' | 'haproxy' = 'members',
  ) {
    const members = await ha.database()
    const url = via === 'members' ? members : `postgres://postgres@127.0.0.1:${ha.haproxyPort}/${members.split('/').pop()!}`
    const cluster: Cluster = await startCluster({ mode: 'real', worker: false, env: { MAYFLY_DATABASE_URL: url } })
    let stopLoad = async () => {}
    try {
      const limited: string[] = []
      for (let i = 0; i < 4; i++) {
        const res = await upload(cluster.url, randomBytes(20_000), { max_downloads: String(LIMIT) })
        assert.equal(res.status, 201, JSON.stringify(res.body))
        limited.push(String(res.body.id))
      }
      const warm: string[] = []
      for (let i = 0; i < 4; i++) {
        const res = await upload(cluster.url, randomBytes(10_000))
        warm.push(String(res.body.id))
        await (await fetch(`${cluster.url}/api/download/${String(res.body.id)}`)).arrayBuffer() // now in the cache
      }
      const cachedReader = readCached(cluster.url, warm)
      const load = startMixedLoad(cluster.url, { clients: 4, maxBytes: 64 * 1024 })
      await new Promise((resolve) => setTimeout(resolve, 3000))
      const leader = (await ha.leader()).name as MemberName
      const hammer = hammerLimited(cluster.url, limited)
      stopLoad = async () => {
        await load.stop()
        await hammer.stop()
        await cachedReader.stop()
      }
      type Seen = { primary: string | null; timeline: number | null; last_failover_at: string | null }
      const seen = async () => ((await getJson(`${cluster.url}/api/cluster`, asCluster(cluster))).body.metadata as { detail: Seen }).detail
      const before = await seen()
      const faultAt = Date.now()
      const promoted = await fault(leader, cluster)
      if (promoted !== null) {
        // what an operator sees follows within 3 s (DESIGN §3): the new primary (through HAProxy: its new timeline)
        const address = `127.0.0.1:${ha.portOf(promoted.name)}`
        await waitFor(`/api/cluster to name the new primary ${address}`, async () => {
          const now = await seen()
          if (via === 'haproxy') return now.timeline !== null && now.timeline > before.timeline!
          return now.primary === address && now.last_failover_at !== null && now.timeline! > before.timeline!
        }, Math.max(500, promoted.at + 3000 - Date.now()), 100)
      }
      // uploads go on after it: at least a few after the new primary
      const settledAfter = Date.now()
      await waitFor('uploads after the fault', () => load.acked.size > 0 && Date.now() - settledAfter > 4000, 30_000)
      const report = await load.stop()
      await hammer.stop()
      const cached = await cachedReader.stop()
      const ready = await fetch(`${cluster.url}/ready`)
      assert.equal(ready.status, 200, `ready again: ${await ready.text()}`)

      const gap = longestGap(report.uploadedAt, faultAt, settledAfter + 4000)
      const resumedAt = promoted === null ? null : report.uploadedAt.find((t) => t >= promoted.at)
      const resume = promoted === null || resumedAt === undefined || resumedAt === null ? null : resumedAt - promoted.at
      console.log(
        `${what}: ${report.uploads} uploads, ${report.downloads} downloads, longest gap without an upload ${gap.ms} ms ` +
          `(floor ${floorMs} ms); cached downloads stalled ${cached.stalledMs} ms in all` +
          (promoted === null ? '' : `; ${promoted.name} took writes ${promoted.at - faultAt} ms after the fault, uploads resumed ${resume} ms later`) +
          `; slowest request ${report.slowestMs} ms (${report.slowest})`,
      )
      assert.deepEqual(report.errors, [], 'no client saw an error: requests during the switch wait')
      // downloads of cached files go on while no primary answers: only the first confirming read waits (1 s)
      assert.deepEqual(cached.errors, [], 'no download of a cached file failed')
      assert.ok(cached.stalledMs <= 2500, `downloads of cached files stalled ${cached.stalledMs} ms in all`)
      assert.deepEqual(hammer.errors, [], 'no download of a limited link failed')
      if (promoted !== null) {
        assert.notEqual(promoted.name, leader, 'another member took over')
        // through HAProxy its checks come first: every 500 ms, so a new primary is reached up to that much later
        const bound = RESUME_BOUND_MS + (via === 'haproxy' ? 1000 : 0)
        assert.ok(resume !== null && resume <= bound, `uploads resumed ${resume} ms after the new primary took writes`)
      }

      // every acknowledged upload is there, byte for byte, on the primary of the end
      for (const [id, hash] of load.acked) {
        const res = await fetch(`${cluster.url}/api/download/${id}`)
        const body = Buffer.from(await res.arrayBuffer())
        assert.equal(res.status, 200, `acknowledged upload ${id} answers`)
        assert.equal(sha256(body), hash, `acknowledged upload ${id} has its bytes`)
      }
      // every limited link served at most its limit while it all happened, and exactly that in the end
      for (const id of limited) {
        let served = hammer.served.get(id)!
        assert.ok(served <= LIMIT, `${id} was served ${served} times, over its limit of ${LIMIT}`)
        for (;;) {
          const res = await fetch(`${cluster.url}/api/download/${id}`)
          await res.arrayBuffer()
          if (res.status === 410) break
          assert.equal(res.status, 200)
          served++
        }
        assert.equal(served, LIMIT, `${id}: every counted download was served, and no more`)
        assert.equal((await cluster.infra.metadata.getFile(id))?.downloads, LIMIT, `${id}: its count is its limit`)
      }
    } finally {
      await stopLoad() // a failed check must not leave clients spinning on a closed cluster
      await cluster.close()
      await ha.heal()
    }
  }

  test("the leader's postmaster killed (kill -9)", async () => {
    await survive('postmaster kill', async (leader) => {
      process.kill(await ha.postmasterPid(leader), 'SIGKILL')
      return ha.newPrimaryAt(leader)
    }, 2800)
  })

  test("through HAProxy (one url, Patroni's REST checks): the leader's postmaster killed", async () => {
    await survive('postmaster kill through HAProxy', async (leader) => {
      process.kill(await ha.postmasterPid(leader), 'SIGKILL')
      return ha.newPrimaryAt(leader)
    }, 2800, 'haproxy')
  })

  test("the leader's Patroni killed (kill -9): its postmaster lives on as an orphan primary", async () => {
    await survive('Patroni kill', async (leader) => {
      process.kill(await ha.patroniPid(leader), 'SIGKILL')
      // the orphan takes writes all along; the new primary is the one that is not it
      return ha.newPrimaryAt(leader, 40_000)
    }, 10_500)
  })

  test('the leader frozen (SIGSTOP) past the ttl, then resumed', async () => {
    await survive('leader frozen', async (leader, cluster) => {
      await ha.freeze(leader)
      // no member takes writes: the gateway is not ready (a load balancer sends uploads elsewhere)
      await waitFor('/ready to answer 503 while no primary takes writes', async () => {
        const res = await fetch(`${cluster.url}/ready`)
        await res.arrayBuffer()
        return res.status === 503
      }, 8000, 200)
      const promoted = await ha.newPrimaryAt(leader, 40_000)
      // resumed after the others moved on: whatever it takes now must not be believed
      await ha.thaw(leader)
      // nor may it take the leader key back (Patroni 3.0.2 over etcd3 did, in 1 round of 2: it demoted the
      // member just promoted, whose acknowledged writes were rewound; over etcd's v2 API it renews by compare-and-swap)
      for (const until = Date.now() + 6000; Date.now() < until; await new Promise((resolve) => setTimeout(resolve, 200))) {
        const now = await ha.leader().catch(() => null)
        assert.notEqual(now?.name, leader, `the woken ${leader} took the leader key back from ${promoted.name}`)
      }
      return promoted
    }, 10_500)
  })

  test('a planned switchover', async () => {
    await survive('switchover', async (leader) => {
      await ha.switchover()
      return ha.newPrimaryAt(leader)
    }, 1500)
  })

  test('what an operator sees of the tier; a read replica whose replay is paused is skipped, and read-your-writes holds', async () => {
    const url = await ha.database()
    const all = await ha.members()
    const leader = all.find((m) => m.role === 'leader')!
    const asyncReplica = all.find((m) => m.role === 'replica') ?? all.find((m) => m.role === 'sync_standby')!
    const readUrl = `postgres://postgres@127.0.0.1:${asyncReplica.port}/${url.split('/').pop()!}`
    const cluster = await startCluster({
      mode: 'real',
      worker: false,
      env: { MAYFLY_DATABASE_URL: url, MAYFLY_DATABASE_READ_URLS: readUrl, MAYFLY_DATABASE_MAX_REPLICA_LAG_MS: '1000' },
    })
    const replica = new pg.Client({ host: '127.0.0.1', port: asyncReplica.port, user: 'postgres', database: 'postgres' })
    await replica.connect()
    try {
      type Detail = {
        primary: string | null; timeline: number | null
        replicas: { address: string; state: string; lag_bytes: number | null }[]
        read_replicas: { address: string; lag_ms: number | null; skipped: boolean }[]
      }
      const detail = async () => ((await getJson(`${cluster.url}/api/cluster`, asCluster(cluster))).body.metadata as { detail: Detail }).detail
      const seen = await waitFor('the read replica in use', async () => {
        const d = await detail()
        return d.read_replicas[0]?.skipped === false ? d : undefined
      }, 10_000)
      assert.equal(seen.primary, `127.0.0.1:${leader.port}`)
      assert.ok(typeof seen.timeline === 'number' && seen.timeline >= 1)
      assert.deepEqual(seen.replicas.map((r) => r.address).sort(), all.filter((m) => m !== leader).map((m) => `127.0.0.1:${m.port}`).sort())
      assert.ok(seen.replicas.every((r) => r.state === 'streaming'), JSON.stringify(seen.replicas))
      const status = await runMayfly(['status', '--url', cluster.url], { env: { MAYFLY_CLUSTER_SECRET: cluster.secret } })
      assert.equal(status.code, 0, status.stderr)
      assert.match(status.stdout, new RegExp(`postgresql .*primary 127\\.0\\.0\\.1:${leader.port} \\(timeline \\d+\\)`))
      const metrics = await (await fetch(`${cluster.url}/metrics`, asCluster(cluster))).text()
      assert.match(metrics, /^mayfly_metadata_up 1$/m)
      assert.match(metrics, /^mayfly_metadata_timeline \d+$/m)
      assert.match(metrics, new RegExp(`^mayfly_metadata_read_replica_lag_seconds\\{replica="127\\.0\\.0\\.1:${asyncReplica.port}/[a-z0-9_]+",skipped="false"\\}`, 'm'))

      // the replica stops replaying: writes go on, and it falls behind (Patroni would resume its replay but in maintenance)
      await ha.maintenance(true)
      await replica.query('SELECT pg_wal_replay_pause()')
      const up = await upload(cluster.url, randomBytes(5000))
      assert.equal(up.status, 201)
      // read-your-writes: the upload's own info page, at once
      const info = await getJson(`${cluster.url}/api/files/${String(up.body.id)}`)
      assert.equal(info.status, 200, 'the info page of a fresh upload never 404s because a replica lags')
      const skipped = await waitFor('the paused replica skipped', async () => {
        const r = (await detail()).read_replicas[0]
        // the tally and heartbeats write all the time: the pause shows as lag
        return r?.skipped === true ? r : undefined
      }, 10_000)
      assert.ok(skipped.lag_ms === null || skipped.lag_ms > 1000, JSON.stringify(skipped))
      // a node the replica has not seen: stale-tolerant reads come from the primary while it is skipped
      const nodeId = `node-paused-${Date.now()}`
      await cluster.infra.metadata.recordHeartbeat({
        id: nodeId, url: 'http://127.0.0.1:9', zone: 'z', version: 'test', capacityBytes: 1, freeBytes: 1, usedBytes: 0, blobCount: 0, quarantined: 0,
      })
      for (let i = 0; i < 4; i++) {
        assert.ok((await cluster.infra.metadata.listNodes()).some((n) => n.id === nodeId), 'the node list does not come from the paused replica')
      }

      await replica.query('SELECT pg_wal_replay_resume()')
      await waitFor('the replica back in use', async () => (await detail()).read_replicas[0]?.skipped === false, 10_000)
    } finally {
      await replica.query('SELECT pg_wal_replay_resume()').catch(() => undefined)
      await ha.maintenance(false).catch(() => undefined)
      await replica.end()
      await cluster.close()
    }
  })

  test('two replication managers across a primary kill mid-repair: one reign at a time, and the repair finishes', async () => {
    const cluster = await startCluster({
      mode: 'real', zones: ['a', 'b', 'c', 'c'], worker: false, env: { ...FAST_MEMBERSHIP, MAYFLY_DATABASE_URL: await ha.database() },
    })
    const managers: MayflyProcess[] = []
    try {
      // slow repair (1 MiB/s), so that the primary dies in the middle of it
      for (let i = 0; i < 2; i++) {
        managers.push(spawnMayfly(['replicator'], { ...cluster.env, MAYFLY_LOG_LEVEL: 'info', MAYFLY_REPAIR_MIB_PER_SECOND: '1' }))
      }
      await Promise.all(managers.map((m) => waitForOutput(m, /this is the active replication manager|standing by/, 20_000)))
      const files = await uploadRandomFiles(cluster, 16, 512 * 1024)
      await waitForFactor(cluster)
      const lost = await nodeHoldingMost(cluster)
      await lost.kill('SIGKILL')
      await waitForLost(cluster, lost.id)
      const status = async () => {
        const doc = await cluster.infra.metadata.replication.readControl(CONTROL_DOCUMENTS.status)
        return doc === null ? null : (doc.value as ReplicatorStatus)
      }
      await waitFor('the repair under way', async () => ((await status())?.copies ?? 0) > 0, 20_000)
      assert.ok((await cluster.infra.metadata.replication.backlog(3, 0)).blobsBelowFactor > 0, 'the primary dies with repair work left')

      const leader = (await ha.leader()).name as MemberName
      process.kill(await ha.postmasterPid(leader), 'SIGKILL')
      await ha.newPrimaryAt(leader)
      await waitForFactor(cluster, 90_000)
      await assertFilesRead(cluster, files)

      // the reigns, as the managers logged them: tokens rise, each belongs to one manager
      const reigns = managers.flatMap((m, index) =>
        m.output().split('\n').flatMap((line) => {
          try {
            const entry = JSON.parse(line) as { msg?: string; token?: number; time?: number }
            return entry.msg === 'this is the active replication manager' ? [{ index, token: entry.token!, at: entry.time! }] : []
          } catch {
            return []
          }
        }),
      ).sort((a, b) => a.at - b.at)
      console.log(`replication managers across a primary kill: reigns ${JSON.stringify(reigns.map((r) => `manager ${r.index} #${r.token}`))}`)
      for (let i = 1; i < reigns.length; i++) assert.ok(reigns[i]!.token > reigns[i - 1]!.token, 'each reign has a larger token')
      assert.equal(new Set(reigns.map((r) => r.token)).size, reigns.length, 'no token held twice')
      assert.ok(managers.every((m) => m.alive()), 'both managers live through it')
      const final = await status()
      assert.ok(final !== null && final.token === reigns.at(-1)!.token, 'the last reign is the one publishing')
    } finally {
      for (const m of managers) if (m.alive()) await m.kill('SIGKILL')
      await cluster.close()
      await ha.heal()
    }
  })
})
