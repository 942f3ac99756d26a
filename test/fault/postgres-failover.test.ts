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
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { sha256, upload } from '../helpers/http.ts'
import { longestGap, startMixedLoad } from '../helpers/load.ts'
import { startPatroniHa, type MemberName, type PatroniHa } from '../helpers/patroni-ha.ts'
import { waitFor } from '../helpers/wait.ts'

/** downloads each limited link allows */
const LIMIT = 6
/** how long uploads may stop after the new primary takes writes: the bound of DESIGN §5.7 plus this machine's slack */
const RESUME_BOUND_MS = 2000

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
  async function survive(what: string, fault: (leader: MemberName) => Promise<{ name: MemberName; at: number } | null>, floorMs: number) {
    const cluster: Cluster = await startCluster({
      mode: 'real',
      worker: false,
      env: { MAYFLY_DATABASE_URL: await ha.database() },
    })
    try {
      const limited: string[] = []
      for (let i = 0; i < 4; i++) {
        const res = await upload(cluster.url, randomBytes(20_000), { max_downloads: String(LIMIT) })
        assert.equal(res.status, 201, JSON.stringify(res.body))
        limited.push(String(res.body.id))
      }
      const load = startMixedLoad(cluster.url, { clients: 4, maxBytes: 64 * 1024 })
      await new Promise((resolve) => setTimeout(resolve, 3000))
      const leader = (await ha.leader()).name as MemberName
      const hammer = hammerLimited(cluster.url, limited)
      const faultAt = Date.now()
      const promoted = await fault(leader)
      // uploads go on after it: at least a few after the new primary
      const settledAfter = Date.now()
      await waitFor('uploads after the fault', () => load.acked.size > 0 && Date.now() - settledAfter > 4000, 30_000)
      const report = await load.stop()
      await hammer.stop()

      const gap = longestGap(report.uploadedAt, faultAt, settledAfter + 4000)
      const resumedAt = promoted === null ? null : report.uploadedAt.find((t) => t >= promoted.at)
      const resume = promoted === null || resumedAt === undefined || resumedAt === null ? null : resumedAt - promoted.at
      console.log(
        `${what}: ${report.uploads} uploads, ${report.downloads} downloads, longest gap without an upload ${gap.ms} ms ` +
          `(floor ${floorMs} ms)` +
          (promoted === null ? '' : `; ${promoted.name} took writes ${promoted.at - faultAt} ms after the fault, uploads resumed ${resume} ms later`) +
          `; slowest request ${report.slowestMs} ms (${report.slowest})`,
      )
      assert.deepEqual(report.errors, [], 'no client saw an error: requests during the switch wait')
      assert.deepEqual(hammer.errors, [], 'no download of a limited link failed')
      if (promoted !== null) {
        assert.notEqual(promoted.name, leader, 'another member took over')
        assert.ok(resume !== null && resume <= RESUME_BOUND_MS, `uploads resumed ${resume} ms after the new primary took writes`)
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

  test("the leader's Patroni killed (kill -9): its postmaster lives on as an orphan primary", async () => {
    await survive('Patroni kill', async (leader) => {
      process.kill(await ha.patroniPid(leader), 'SIGKILL')
      // the orphan takes writes all along; the new primary is the one that is not it
      return ha.newPrimaryAt(leader, 40_000)
    }, 10_500)
  })

  test('the leader frozen (SIGSTOP) past the ttl, then resumed', async () => {
    await survive('leader frozen', async (leader) => {
      await ha.freeze(leader)
      const promoted = await ha.newPrimaryAt(leader, 40_000)
      // resumed after the others moved on: whatever it takes now must not be believed
      await ha.thaw(leader)
      return promoted
    }, 10_500)
  })

  test('a planned switchover', async () => {
    await survive('switchover', async (leader) => {
      await ha.switchover()
      return ha.newPrimaryAt(leader)
    }, 1500)
  })
})
