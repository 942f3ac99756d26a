// Several gateways behind HAProxy (issue 10): every Mayfly process real and
// separate, as in production. Two `mayfly gateway` processes behind the
// balancer of the lab (src/cli/lab/gateway-balancer.ts, /ready checks),
// three storage nodes that announce themselves through the balancer, one
// `mayfly worker` (whose sweeper cleans up after dead gateways), PostgreSQL,
// Redis and RabbitMQ of the machine. A kill -9 of one gateway under a mixed
// load fails only the requests that were in flight on it; the uploads it was
// writing are cleaned up by the cluster; /api/cluster tells which gateway
// died.
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import pg from 'pg'
import { loadConfig } from '../../src/config.ts'
import { newId } from '../../src/core/ids.ts'
import { createLogger } from '../../src/log.ts'
import { createInfrastructure, type Infrastructure } from '../../src/wiring.ts'
import { AMQP_URL, REDIS_URL } from '../helpers/cluster.ts'
import { createTestDatabase, type TestDatabase } from '../helpers/databases.ts'
import { startGatewayBalancer, type TestBalancer } from '../helpers/gateway-balancer.ts'
import { sha256 } from '../helpers/http.ts'
import { longestGap, startMixedLoad } from '../helpers/load.ts'
import { freePorts, runMayfly, spawnMayfly, type MayflyProcess } from '../helpers/mayfly-process.ts'
import { startStorageNodeProcess, type StorageNodeProcess } from '../helpers/storage-node-process.ts'
import { waitFor } from '../helpers/wait.ts'

interface GatewayJson {
  id: string
  pid: number
  url: string
  state: string
  heartbeat_age_ms: number
}

describe('several gateways behind HAProxy', { timeout: 180_000 }, () => {
  let db: TestDatabase
  let balancer: TestBalancer
  let infra: Infrastructure
  const gateways: { port: number; proc: MayflyProcess }[] = []
  const nodes: StorageNodeProcess[] = []
  let worker: MayflyProcess
  let env: Record<string, string>
  const secret = randomBytes(24).toString('base64url')

  const spawnGateway = (port: number) => spawnMayfly(['gateway'], { ...env, MAYFLY_PORT: String(port) })
  const cluster = async () => {
    const res = await fetch(`${balancer.url}/api/cluster`, { headers: { authorization: `Bearer ${secret}` } })
    assert.equal(res.status, 200)
    return (await res.json()) as { gateways: GatewayJson[] | null; storage_nodes: { id: string; state: string }[] }
  }

  before(async () => {
    db = await createTestDatabase()
    const [lbPort, ...gatewayPorts] = await freePorts(3)
    env = {
      MAYFLY_DATABASE_URL: db.url,
      MAYFLY_REDIS_URL: REDIS_URL,
      MAYFLY_AMQP_URL: AMQP_URL,
      MAYFLY_NAMESPACE: `t-${randomUUID().slice(0, 8)}`,
      MAYFLY_CLUSTER_SECRET: secret,
      MAYFLY_HOST: '127.0.0.1',
      MAYFLY_LOG_LEVEL: 'info',
      MAYFLY_NODE_TIMEOUT_MS: '3000',
      MAYFLY_SWEEP_INTERVAL_SECONDS: '0.5',
      MAYFLY_GATEWAY_DEAD_AFTER_SECONDS: '3',
      MAYFLY_TRUSTED_PROXIES: '127.0.0.1',
    }
    balancer = await startGatewayBalancer(lbPort!, gatewayPorts)
    for (const port of gatewayPorts) gateways.push({ port, proc: spawnGateway(port) })
    for (const zone of ['a', 'b', 'c']) {
      nodes.push(await startStorageNodeProcess({ zone, secret, controlUrl: balancer.url, env: { MAYFLY_HEARTBEAT_INTERVAL_MS: '250' } }))
    }
    worker = spawnMayfly(['worker'], env)
    infra = await createInfrastructure(loadConfig({ ...env, MAYFLY_LOG_LEVEL: 'silent', MAYFLY_DATA_DIR: 'memory://' }), createLogger('silent'), secret)
    await waitFor('both gateways ready and every node announced through the balancer', async () => {
      for (const g of gateways) if (!g.proc.alive()) throw new Error(`a gateway exited:\n${g.proc.output()}`)
      const ready = await Promise.all(gateways.map((g) => fetch(`http://127.0.0.1:${g.port}/ready`).then((r) => (r.body?.cancel(), r.status === 200), () => false)))
      if (!ready.every(Boolean)) return false
      const c = await cluster()
      return c.gateways?.filter((g) => g.state === 'up').length === 2 && c.storage_nodes.filter((n) => n.state === 'up').length === 3
    }, 60_000)
  })
  after(async () => {
    for (const g of gateways) await g.proc.kill('SIGKILL')
    await worker?.kill('SIGKILL')
    for (const n of nodes) await n.kill('SIGKILL')
    await balancer?.stop()
    await infra?.close()
    await db?.drop()
  })

  test('/api/cluster lists every gateway with its heartbeat, whichever gateway answers', async () => {
    for (let i = 0; i < 4; i++) {
      const { gateways: listed } = await cluster()
      assert.ok(listed !== null)
      const live = listed.filter((g) => g.state === 'up')
      assert.deepEqual(live.map((g) => g.pid).sort(), gateways.map((g) => g.proc.pid).sort())
      for (const g of live) {
        assert.ok(g.heartbeat_age_ms < 3000, `heartbeat ${g.heartbeat_age_ms} ms old`)
        assert.match(g.url, /^http:\/\/127\.0\.0\.1:\d+$/)
      }
    }
  })

  test('kill -9 of a gateway under load: only its requests in flight fail, and the cluster removes the upload it was writing', async () => {
    const load = startMixedLoad(balancer.url, { clients: 6, maxBytes: 512 * 1024 })
    await waitFor('uploads and downloads through both gateways', () => load.acked.size >= 20, 30_000)
    const victim = gateways[0]!
    const victimId = (await cluster()).gateways!.find((g) => g.pid === victim.proc.pid)!.id

    // an upload the victim is writing when it dies: copies on every node, its pending record owned by the victim
    const key = newId()
    const bytes = randomBytes(100_000)
    await infra.metadata.beginBlob(key, new Date(), victimId)
    for (const n of nodes) await infra.client.put(n.url, key, bytes)

    await victim.proc.kill('SIGKILL')
    const killedAt = Date.now()
    await new Promise((r) => setTimeout(r, 6000))
    const report = await load.stop()

    // only requests already running on the victim failed; none that began after the kill
    const late = report.failures.filter((f) => f.startedAt > killedAt + 100)
    assert.deepEqual(late, [], 'requests that began after the kill all succeeded')
    assert.ok(report.failures.length <= 6, `at most one request in flight per client failed: ${report.errors.join('; ')}`)
    const uploadGap = longestGap(report.uploadedAt, killedAt, killedAt + 6000)
    const downloadGap = longestGap(report.downloadedAt, killedAt, killedAt + 6000)
    console.log(`gateway kill: ${report.failures.length} requests failed (in flight on it), longest pause ${uploadGap.ms} ms for uploads, ${downloadGap.ms} ms for downloads; ${report.uploads} uploads, ${report.downloads} downloads`)
    assert.ok(uploadGap.ms < 1500, `uploads paused ${uploadGap.ms} ms`)
    assert.ok(downloadGap.ms < 1500, `downloads paused ${downloadGap.ms} ms`)

    // every acknowledged upload reads back whole through the survivor
    for (const [id, digest] of load.acked) {
      const res = await fetch(`${balancer.url}/api/download/${id}`)
      assert.equal(res.status, 200, `file ${id}`)
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest)
    }

    // the survivor says which gateway died; the nodes stay up on heartbeats through the balancer
    await waitFor('the dead gateway listed as down', async () => (await cluster()).gateways?.find((g) => g.id === victimId)?.state === 'down', 10_000)
    assert.ok((await cluster()).storage_nodes.every((n) => n.state === 'up'))
    const status = await runMayfly(['status', '--url', balancer.url], { env: { MAYFLY_CLUSTER_SECRET: secret } })
    assert.equal(status.code, 0, status.stderr)
    assert.match(status.stdout, /^gateways: 1 of 2 up: /m)
    assert.match(status.stdout, new RegExp(`\\(pid ${victim.proc.pid}\\) down, silent \\d+ s`))

    // the cluster cleans up after it: the upload's copies leave every node, a tombstone stays, nothing of it is pending
    const direct = new pg.Client({ connectionString: db.url })
    await direct.connect()
    try {
      await waitFor('the dead gateway\'s upload removed from every node', async () => {
        const held = await Promise.all(nodes.map((n) => infra.client.head(n.url, key).then(() => true, () => false)))
        return held.every((h) => !h)
      }, 20_000)
      const { rows } = await direct.query<{ state: string; cleared: boolean }>('SELECT state, cleared_at IS NOT NULL AS cleared FROM blobs WHERE key = $1', [key])
      assert.deepEqual(rows, [{ state: 'abandoned', cleared: true }])
      await waitFor('no upload of the dead gateway left pending', async () => {
        const pending = await direct.query("SELECT key FROM blobs WHERE owner = $1 AND state = 'pending'", [victimId])
        return pending.rows.length === 0
      }, 20_000)
    } finally {
      await direct.end()
    }

    // a new gateway process on the same port joins under a new id
    victim.proc = spawnGateway(victim.port)
    await waitFor('the restarted gateway up', async () => (await cluster()).gateways?.some((g) => g.pid === victim.proc.pid && g.state === 'up') === true, 30_000)
    const listed = (await cluster()).gateways!
    assert.notEqual(listed.find((g) => g.pid === victim.proc.pid)?.id, victimId)
  })
})
