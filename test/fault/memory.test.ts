// DESIGN §5 invariant 9 (memory is bounded): the gateway, run as its own
// process (`mayfly gateway` on a PostgreSQL test database, three storage
// nodes announcing themselves to it), streams a 1 GiB upload and a 1 GiB
// download while its resident memory (VmRSS) stays within 64 MiB of its idle
// baseline. The test generates and hashes the bytes on the fly: it never
// holds the file either.
//
// The baseline is taken idle after a 64 MiB warm-up. The first heavy stream
// grows V8's young generation to its working size once (measured here: about
// 55-70 MiB with Node 24's defaults, about 20 MiB with --max-semi-space-size=2;
// 64 MiB, 256 MiB and 3 × 256 MiB all plateau at the same level). That cost
// does not depend on the file size, so it is paid before the baseline and
// bounded separately (COLD_LIMIT, from the process as it started); what
// LIMIT catches is memory that grows with the bytes streamed.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { createTestDatabase } from '../helpers/cluster.ts'
import { MiB, downloadHash, uploadGenerated } from '../helpers/generated-upload.ts'
import { getJson, waitFor } from '../helpers/http.ts'
import { freePort, residentBytes, spawnMayfly, type MayflyProcess } from '../helpers/mayfly-process.ts'
import { startStorageNodeProcess, type StorageNodeProcess } from '../helpers/storage-node-process.ts'

const GiB = 1024 * MiB
const LIMIT = 64 * MiB
const COLD_LIMIT = 128 * MiB

/** Samples a process's VmRSS every 100 ms; stop() returns the highest value seen. */
function sampleRss(pid: number): { stop(): Promise<number> } {
  let peak = 0
  let last: Promise<void> = Promise.resolve()
  const timer = setInterval(() => {
    last = residentBytes(pid).then((rss) => void (peak = Math.max(peak, rss)), () => {})
  }, 100)
  return {
    async stop() {
      clearInterval(timer)
      await last
      return peak
    },
  }
}

describe('gateway memory under a 1 GiB upload and download', { timeout: 600_000 }, () => {
  let dir: string
  let db: Awaited<ReturnType<typeof createTestDatabase>>
  let gateway: MayflyProcess
  let base: string
  const nodes: StorageNodeProcess[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-memory-'))
    db = await createTestDatabase()
    const secret = randomBytes(24).toString('base64url')
    const port = await freePort()
    base = `http://127.0.0.1:${port}`
    gateway = spawnMayfly(['gateway'], {
      MAYFLY_PORT: String(port),
      MAYFLY_DATA_DIR: join(dir, 'gateway'),
      MAYFLY_DATABASE_URL: db.url,
      MAYFLY_CLUSTER_SECRET: secret,
      MAYFLY_LOG_LEVEL: 'warn',
    })
    await waitFor('the gateway to serve', async () => (await fetch(`${base}/health`).then((r) => r.ok, () => false)) || undefined, 30_000)
    for (const zone of ['a', 'b', 'c']) {
      nodes.push(await startStorageNodeProcess({ zone, secret, controlUrl: base, dataDir: join(dir, `node-${zone}`), env: { MAYFLY_HEARTBEAT_INTERVAL_MS: '500' } }))
    }
    await waitFor('three nodes up', async () => {
      const res = await getJson(`${base}/api/nodes`, { headers: { authorization: `Bearer ${secret}` } })
      const list = (res.body.nodes ?? []) as { state: string }[]
      return list.filter((n) => n.state === 'up').length === 3 ? true : undefined
    })
  })

  after(async () => {
    for (const node of nodes) await node.stop().catch(() => {})
    await gateway?.kill('SIGTERM')
    await db?.drop().catch(() => {})
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('RSS grows by less than 64 MiB while 1 GiB goes up and comes back down, bytes exact', async (t) => {
    const cold = await residentBytes(gateway.pid)
    // warm up every code path (parsers, pools, JIT, V8's young generation), then take the idle baseline
    const warm = await uploadGenerated(base, { size: 64 * MiB })
    assert.equal(warm.status, 201, JSON.stringify(warm.body))
    assert.equal((await downloadHash(String(warm.body.download_url))).sha256, warm.sha256)
    await waitFor('the gateway to settle', async () => ((await getJson(`${base}/ready`)).status === 200 ? true : undefined))
    const baseline = await residentBytes(gateway.pid)

    const upSampler = sampleRss(gateway.pid)
    const upStarted = Date.now()
    const up = await uploadGenerated(base, { size: GiB })
    const upPeak = await upSampler.stop()
    const upSeconds = (Date.now() - upStarted) / 1000
    assert.equal(up.status, 201, JSON.stringify(up.body))
    assert.equal(up.body.size, GiB)
    assert.equal(up.body.sha256, up.sha256)

    const downSampler = sampleRss(gateway.pid)
    const downStarted = Date.now()
    const down = await downloadHash(String(up.body.download_url))
    const downPeak = await downSampler.stop()
    const downSeconds = (Date.now() - downStarted) / 1000
    assert.equal(down.status, 200)
    assert.equal(down.size, GiB)
    assert.equal(down.sha256, up.sha256, 'the exact bytes')

    const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`
    const report = `at start ${mib(cold)}, baseline ${mib(baseline)}, upload peak ${mib(upPeak)} (${upSeconds.toFixed(1)} s), download peak ${mib(downPeak)} (${downSeconds.toFixed(1)} s)`
    t.diagnostic(`gateway RSS: ${report}`)
    assert.ok(upPeak - baseline < LIMIT, `upload: ${report}`)
    assert.ok(downPeak - baseline < LIMIT, `download: ${report}`)
    assert.ok(Math.max(upPeak, downPeak) - cold < COLD_LIMIT, `from the start: ${report}`)
  })
})
