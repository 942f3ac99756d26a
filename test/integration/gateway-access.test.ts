// Issue 7, bugs 4 and 14, at the route level (app.inject() on buildGateway
// over the embedded adapters; no storage node needed):
// - who may see the cluster (DESIGN §3): the cluster secret always, anyone
//   only while MAYFLY_PUBLIC_STATUS is true; /health and /ready stay public;
// - the replication backlog comes from the manager's published status, never
//   from a scan by the gateway;
// - a password-protected file's info shows nothing of it without the password;
// - X-Forwarded-* count only from MAYFLY_TRUSTED_PROXIES.
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Registry } from 'prom-client'
import { replicatorOptions } from '../../src/cli/services.ts'
import { loadConfig, type Config } from '../../src/config.ts'
import { hashPassword } from '../../src/core/secrets.ts'
import { createLogger } from '../../src/log.ts'
import type { MetadataStore } from '../../src/ports.ts'
import { buildGateway } from '../../src/services/gateway/app.ts'
import { startReplicationManager } from '../../src/services/replicator/manager.ts'
import { createInfrastructure, gatewaySettings, type Infrastructure } from '../../src/wiring.ts'
import { waitFor } from '../helpers/http.ts'
import { newFile } from '../helpers/metadata-fixtures.ts'

const STATUS_ROUTES = ['/api/cluster', '/api/nodes', '/metrics', '/admin']

describe('gateway: who sees the cluster, and what a file shows', { timeout: 120_000 }, () => {
  const secret = randomBytes(24).toString('base64url')
  const log = createLogger('silent')
  let dir: string
  let infra: Infrastructure
  let baseEnv: Record<string, string>
  /** backlog scans the gateways asked of the metadata store */
  let gatewayScans = 0
  const apps: ReturnType<typeof buildGateway>[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-access-'))
    baseEnv = {
      MAYFLY_DATA_DIR: dir,
      MAYFLY_CLUSTER_SECRET: secret,
      MAYFLY_LOG_LEVEL: 'silent',
      MAYFLY_NAMESPACE: `t-${randomUUID().slice(0, 8)}`,
    }
    infra = await createInfrastructure(loadConfig(baseEnv), log, secret)
  })
  after(async () => {
    for (const app of apps) await app.close()
    await infra?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  /** A gateway as `mayfly gateway` builds it, with more MAYFLY_* settings. */
  function gateway(env: Record<string, string> = {}, now?: () => Date) {
    const config: Config = loadConfig({ ...baseEnv, ...env })
    const real = infra.metadata.replication
    // the same store, with its backlog scan counted: a gateway must never run it
    const metadata: MetadataStore = {
      ...infra.metadata,
      replication: { ...real, backlog: (...args) => (gatewayScans++, real.backlog(...args)) },
    }
    const app = buildGateway({
      settings: gatewaySettings(config, secret),
      log,
      metadata,
      cache: infra.cache,
      rateLimiter: infra.rateLimiter,
      queue: infra.queue,
      blobs: infra.blobs,
      nodes: infra.nodes,
      metrics: new Registry(),
      now,
    })
    apps.push(app)
    return app
  }

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

  describe('status routes (bug 4)', () => {
    test('MAYFLY_PUBLIC_STATUS unset (the `mayfly gateway` default): 401 without the cluster secret, 200 with it', async () => {
      const app = gateway()
      for (const url of STATUS_ROUTES) {
        for (const headers of [{}, bearer('not-the-secret'), { authorization: secret }]) {
          const res = await app.inject({ url, headers })
          assert.equal(res.statusCode, 401, `${url} with ${JSON.stringify(headers)}`)
          const body = res.json() as { error: string; message: string }
          assert.equal(body.error, 'unauthorized', url)
          assert.equal(typeof body.message, 'string')
          assert.doesNotMatch(res.body, /storage_nodes|# HELP|<html/i, `${url} shows nothing`)
        }
        const res = await app.inject({ url, headers: bearer(secret) })
        assert.equal(res.statusCode, 200, `${url} with the secret: ${res.body.slice(0, 200)}`)
      }
    })

    test('MAYFLY_PUBLIC_STATUS=false: the same', async () => {
      const app = gateway({ MAYFLY_PUBLIC_STATUS: 'false' })
      for (const url of STATUS_ROUTES) {
        assert.equal((await app.inject({ url })).statusCode, 401, url)
        assert.equal((await app.inject({ url, headers: bearer(secret) })).statusCode, 200, url)
      }
    })

    test('MAYFLY_PUBLIC_STATUS=true: anyone sees them', async () => {
      const app = gateway({ MAYFLY_PUBLIC_STATUS: 'true' })
      for (const url of STATUS_ROUTES) {
        assert.equal((await app.inject({ url })).statusCode, 200, url)
        assert.equal((await app.inject({ url, headers: bearer('whatever') })).statusCode, 200, url)
      }
    })

    test('/health and /ready stay public; operator routes still need the secret', async () => {
      const app = gateway()
      assert.equal((await app.inject({ url: '/health' })).statusCode, 200)
      const ready = await app.inject({ url: '/ready' })
      // no storage node here: not ready, but it says so to anyone
      assert.equal(ready.statusCode, 503)
      assert.ok(Array.isArray((ready.json() as { dependencies: unknown[] }).dependencies))
      assert.equal((await app.inject({ method: 'POST', url: '/api/cluster/rebalance' })).statusCode, 401)
    })

    test('/ready shows each dependency\'s state to anyone, its details (members, hosts, brokers) only as the status routes', async () => {
      type Ready = { dependencies: { name: string; ok: boolean; detail?: unknown }[] }
      const names = (r: Ready) => r.dependencies.map((d) => d.name)
      const closed = gateway()
      const anyone = (await closed.inject({ url: '/ready' })).json() as Ready
      assert.deepEqual(names(anyone), ['metadata', 'storage', 'cache', 'queue'])
      assert.ok(anyone.dependencies.every((d) => typeof d.ok === 'boolean' && d.detail === undefined), JSON.stringify(anyone))
      const holder = (await closed.inject({ url: '/ready', headers: bearer(secret) })).json() as Ready
      assert.ok(holder.dependencies.every((d) => d.detail !== undefined), JSON.stringify(holder))
      const open = (await gateway({ MAYFLY_PUBLIC_STATUS: 'true' }).inject({ url: '/ready' })).json() as Ready
      assert.ok(open.dependencies.every((d) => d.detail !== undefined))
    })
  })

  describe('the backlog comes from the manager (bug 4)', () => {
    let fileId: string

    before(async () => {
      // one live blob recorded on a single (unknown) node: below the factor of 3, nothing can repair it here
      const file = newFile({ replicas: ['gone-node'] })
      fileId = file.id
      await infra.metadata.createFile(file)
    })

    async function replication(app: ReturnType<typeof buildGateway>) {
      const res = await app.inject({ url: '/api/cluster', headers: bearer(secret) })
      assert.equal(res.statusCode, 200, res.body)
      return (res.json() as { replication: Record<string, unknown> & { manager: { active: boolean } } }).replication
    }

    test('no manager running: the backlog is unknown (null, manager inactive), and no gateway scans for it', async () => {
      assert.ok(fileId)
      const app = gateway()
      const scansBefore = gatewayScans
      const r = await replication(app)
      assert.equal(r.manager.active, false)
      for (const field of ['blobs_below_factor', 'bytes_to_copy', 'blobs_above_factor', 'blobs_below_zone_spread', 'blobs_without_replica', 'backlog_counted_at']) {
        assert.equal(r[field], null, field)
      }
      const metrics = (await app.inject({ url: '/metrics', headers: bearer(secret) })).body
      assert.match(metrics, /mayfly_replication_manager_active 0/)
      assert.match(metrics, /mayfly_replication_blobs\{state="below_factor"\} NaN/i)
      assert.match(metrics, /mayfly_replication_bytes_to_copy NaN/i)
      assert.equal(gatewayScans, scansBefore, 'the gateway ran no backlog scan')
    })

    test('with the manager running: its count appears in /api/cluster and /metrics; the gateway still scans nothing', async (t) => {
      const app = gateway()
      const scansBefore = gatewayScans
      const config = loadConfig(baseEnv)
      const manager = startReplicationManager({ ...replicatorOptions(config, log, infra), idleMs: 100 })
      t.after(() => manager.stop())
      const r = await waitFor('the manager\'s backlog', async () => {
        const seen = await replication(app)
        return seen.manager.active && seen.blobs_below_factor !== null ? seen : undefined
      }, 30_000)
      assert.equal(r.blobs_below_factor, 1)
      // two copies to make of the fixture's blob
      assert.equal(r.bytes_to_copy, 2 * newFile().blob.size)
      assert.equal(r.blobs_without_replica, 0)
      assert.ok(!Number.isNaN(Date.parse(String(r.backlog_counted_at))))
      const metrics = (await app.inject({ url: '/metrics', headers: bearer(secret) })).body
      assert.match(metrics, /mayfly_replication_manager_active 1/)
      assert.match(metrics, /mayfly_replication_blobs\{state="below_factor"\} 1\b/)

      // a gateway whose clock is a minute on: the last status is stale, so no manager and no backlog
      const later = gateway({}, () => new Date(Date.now() + 60_000))
      const stale = await replication(later)
      assert.equal(stale.manager.active, false)
      assert.equal(stale.blobs_below_factor, null)
      assert.equal(gatewayScans, scansBefore, 'the gateways ran no backlog scan')
    })
  })

  describe('what a file shows (bug 14)', () => {
    const NAME = 'merger-plans-2026.pdf'
    let locked: ReturnType<typeof newFile>
    let open: ReturnType<typeof newFile>

    before(async () => {
      locked = newFile({ name: NAME, mime: 'application/pdf', maxDownloads: 5, passwordHash: await hashPassword('hunter2') })
      open = newFile({ name: 'holiday.jpg' })
      await infra.metadata.createFile(locked)
      await infra.metadata.createFile(open)
    })

    test('a protected file\'s info without its password: only that it exists and needs one', async () => {
      const app = gateway()
      const res = await app.inject({ url: `/api/files/${locked.id}` })
      assert.equal(res.statusCode, 200, res.body)
      const body = res.json() as Record<string, unknown>
      assert.deepEqual(Object.keys(body).sort(), [
        'download_url', 'downloads_remaining', 'expires_at', 'id', 'info_url', 'password_protected', 'share_url', 'status',
      ])
      assert.equal(body.password_protected, true)
      assert.equal(body.status, 'active')
      assert.equal(body.downloads_remaining, 5)
      // as JSON strings and numbers: the random id in the urls may hold "n1" or the size's digits
      for (const leak of [NAME, 'application/pdf', locked.blob.size, locked.blob.sha256, locked.blob.key, 'n1', 'replicas', 'variants']) {
        assert.ok(!res.body.includes(JSON.stringify(leak)), `the answer shows ${leak}: ${res.body}`)
      }
      assert.match(String(res.headers['cache-control']), /no-store/)
      // a blank password is no password
      const blank = await app.inject({ url: `/api/files/${locked.id}`, headers: { 'x-mayfly-password': '' } })
      assert.equal((blank.json() as Record<string, unknown>).name, undefined)
    })

    test('with a wrong password: 401 wrong_password; with the right one: the whole view', async () => {
      const app = gateway()
      const wrong = await app.inject({ url: `/api/files/${locked.id}`, headers: { 'x-mayfly-password': 'hunter3' } })
      assert.equal(wrong.statusCode, 401)
      assert.equal((wrong.json() as { error: string }).error, 'wrong_password')
      assert.ok(!wrong.body.includes(NAME))
      const right = await app.inject({ url: `/api/files/${locked.id}`, headers: { 'x-mayfly-password': 'hunter2' } })
      assert.equal(right.statusCode, 200)
      const body = right.json() as Record<string, unknown>
      assert.equal(body.name, NAME)
      assert.equal(body.sha256, locked.blob.sha256)
      assert.equal(body.size, locked.blob.size)
      assert.deepEqual((body.replicas as { node_id: string }[]).map((r) => r.node_id).sort(), ['n1', 'n2'])
    })

    test('a file without a password shows everything to anyone, as before', async () => {
      const res = await gateway().inject({ url: `/api/files/${open.id}` })
      assert.equal(res.statusCode, 200)
      const body = res.json() as Record<string, unknown>
      assert.equal(body.name, 'holiday.jpg')
      assert.equal(body.password_protected, false)
      assert.ok(Array.isArray(body.replicas))
    })

    test('the share page of a protected file still offers the password form', async () => {
      const res = await gateway().inject({ url: `/f/${locked.id}` })
      assert.equal(res.statusCode, 200)
      assert.match(res.body, /<form method="post" action="\/f\/[^"]+\/download">/)
      assert.match(res.body, /type="password" name="password"/)
    })
  })

  describe('forwarded headers (bug 14)', () => {
    let id: string
    before(async () => {
      const file = newFile()
      id = file.id
      await infra.metadata.createFile(file)
    })
    const forged = { host: 'mayfly.example:5000', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' }
    const shareUrl = async (app: ReturnType<typeof buildGateway>, remoteAddress: string) => {
      const res = await app.inject({ url: `/api/files/${id}`, headers: forged, remoteAddress })
      assert.equal(res.statusCode, 200, res.body)
      return (res.json() as { share_url: string }).share_url
    }

    test('with no trusted proxy, X-Forwarded-Host and -Proto change nothing', async () => {
      const app = gateway()
      assert.equal(await shareUrl(app, '127.0.0.1'), `http://mayfly.example:5000/f/${id}`)
      assert.equal(await shareUrl(app, '10.0.0.1'), `http://mayfly.example:5000/f/${id}`)
    })

    test('from a trusted proxy they count; from any other address they do not', async () => {
      const app = gateway({ MAYFLY_TRUSTED_PROXIES: '10.0.0.1,::1' })
      assert.equal(await shareUrl(app, '10.0.0.1'), `https://evil.example/f/${id}`)
      assert.equal(await shareUrl(app, '10.0.0.2'), `http://mayfly.example:5000/f/${id}`)
      assert.equal(await shareUrl(app, '127.0.0.1'), `http://mayfly.example:5000/f/${id}`)
    })
  })
})
