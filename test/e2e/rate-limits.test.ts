// Issue 8, part 5: per-client rate limits on uploads, downloads and password
// guesses: 429 `rate_limited` with Retry-After and a JSON error; shared by
// two gateways through Redis, in one process in embedded mode; never
// counted against the cluster's own traffic. Clients are told apart by
// X-Forwarded-For, believed from 127.0.0.1 (MAYFLY_TRUSTED_PROXIES).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { startGateway } from '../../src/cli/services.ts'
import { loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import { createInfrastructure, type Infrastructure } from '../../src/wiring.ts'
import { startCluster, type Cluster, type Mode } from '../helpers/cluster.ts'
import { freePorts, runMayfly } from '../helpers/mayfly-process.ts'

const LIMITS = {
  MAYFLY_TRUSTED_PROXIES: '127.0.0.1',
  MAYFLY_RATE_LIMIT_UPLOADS: '3/60',
  MAYFLY_RATE_LIMIT_DOWNLOADS: '4/60',
  MAYFLY_RATE_LIMIT_PASSWORD_ATTEMPTS: '3/600',
}

/** a client of its own: a fresh address in X-Forwarded-For */
let clients = 0
const client = () => `10.0.${Math.floor(++clients / 250)}.${clients % 250}`

async function uploadAs(base: string, from: string, fields: Record<string, string> = {}, headers: Record<string, string> = {}) {
  const form = new FormData()
  for (const [k, v] of Object.entries(fields)) form.append(k, v)
  form.append('file', new Blob([`hello from ${from}\n`]), 'hello.txt')
  const res = await fetch(`${base}/api/upload`, { method: 'POST', body: form, headers: { 'x-forwarded-for': from, ...headers } })
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Record<string, unknown> }
}

async function get(url: string, from: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await fetch(url, { method, headers: { 'x-forwarded-for': from, ...headers } })
  const text = await res.text()
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: text }
}

function assertLimited(r: { status: number; retryAfter: string | null; body: unknown }, what: string) {
  assert.equal(r.status, 429, `${what}: ${JSON.stringify(r.body)}`)
  assert.match(r.retryAfter ?? '', /^[1-9]\d*$/, `${what}: Retry-After in whole seconds`)
  const body = typeof r.body === 'string' ? (JSON.parse(r.body) as Record<string, unknown>) : (r.body as Record<string, unknown>)
  assert.equal(body.error, 'rate_limited')
  assert.match(String(body.message), /try again in \d+ s/)
}


for (const mode of ['embedded', 'real'] as Mode[]) {
  describe(`rate limits per client (${mode})`, { timeout: 60_000 }, () => {
    let cluster: Cluster
    let gateways: string[]
    let other: { app: FastifyInstance; infra: Infrastructure } | null = null
    before(async () => {
      cluster = await startCluster({ mode, worker: false, env: LIMITS })
      gateways = [cluster.url]
      if (mode === 'real') {
        // a second gateway with connections of its own: the buckets are shared through Redis
        const config = loadConfig({ ...cluster.env, MAYFLY_HOST: '127.0.0.1' })
        const log = createLogger('silent')
        const infra = await createInfrastructure(config, log, cluster.secret)
        const app = await startGateway(config, log, infra, cluster.secret, 0)
        other = { app, infra }
        gateways.push(`http://127.0.0.1:${(app.server.address() as { port: number }).port}`)
      }
    })
    after(async () => {
      await other?.app.close()
      await other?.infra.close()
      await cluster?.close()
    })
    /** the i-th request's gateway: alternating when there are two */
    const via = (i: number) => gateways[i % gateways.length]!

    test('uploads: the configured count per client, then 429 with Retry-After; another client and the cluster secret are not held back', async () => {
      const from = client()
      for (let i = 0; i < 3; i++) assert.equal((await uploadAs(via(i), from)).status, 201)
      assertLimited(await uploadAs(via(3), from), 'the 4th upload')
      assertLimited(await uploadAs(via(4), from), 'the 5th upload')
      assert.equal((await uploadAs(via(5), client())).status, 201, 'another client uploads')
      assert.equal((await uploadAs(via(6), from, {}, { authorization: `Bearer ${cluster.secret}` })).status, 201, 'the cluster secret is never limited')
    })

    test('downloads: the configured count per client, then 429; HEAD and the file info are not downloads', async () => {
      const up = await uploadAs(cluster.url, client())
      assert.equal(up.status, 201)
      const id = String(up.body.id)
      const from = client()
      for (let i = 0; i < 4; i++) assert.equal((await get(`${via(i)}/api/download/${id}`, from)).status, 200)
      assertLimited(await get(`${via(4)}/api/download/${id}`, from), 'the 5th download')
      assert.equal((await get(`${via(5)}/api/download/${id}`, from, {}, 'HEAD')).status, 200)
      assert.equal((await get(`${via(6)}/api/files/${id}`, from)).status, 200)
      assert.equal((await get(`${via(7)}/api/download/${id}`, client())).status, 200, 'another client downloads')
    })

    test('password guesses: stopped after the configured wrong ones, right password included; a right one costs nothing', async () => {
      const up = await uploadAs(cluster.url, client(), { password: 'correct horse' })
      assert.equal(up.status, 201)
      const info = (i: number, password: string, from: string) => get(`${via(i)}/api/files/${String(up.body.id)}`, from, { 'x-mayfly-password': password })
      // an owner who knows it: as often as they like
      const owner = client()
      for (let i = 0; i < 6; i++) assert.equal((await info(i, 'correct horse', owner)).status, 200)
      const guesser = client()
      for (let i = 0; i < 3; i++) assert.equal((await info(i, `guess ${i}`, guesser)).status, 401)
      assertLimited(await info(3, 'guess 3', guesser), 'the 4th wrong guess')
      assertLimited(await info(4, 'correct horse', guesser), 'even the right password, once guessing was stopped')
      assertLimited(await get(`${via(5)}/api/download/${String(up.body.id)}`, guesser, { 'x-mayfly-password': 'guess 5' }), 'a guess through the download')
      assert.equal((await info(6, 'correct horse', owner)).status, 200, 'the owner is not held back')
    })

    test('mayfly download, once this address guessed too often, says so and when to come back', async () => {
      const up = await uploadAs(cluster.url, client(), { password: 'right' })
      const url = `${cluster.url}/api/download/${String(up.body.id)}`
      // the CLI's own address, 127.0.0.1 (no X-Forwarded-For), guesses wrong three times
      for (let i = 0; i < 3; i++) assert.equal((await fetch(url, { headers: { 'x-mayfly-password': `no ${i}` } })).status, 401)
      const run = await runMayfly(['download', String(up.body.id), '--url', cluster.url, '--password', 'right', '-o', '/dev/null'])
      assert.notEqual(run.code, 0)
      assert.match(run.stderr, /too many attempts from this address \(wrong passwords or downloads\): try again in \d+ s/, run.stderr)
    })

    test('the cluster\'s own traffic is never limited: health checks, readiness, node heartbeats', async () => {
      const from = client()
      for (let i = 0; i < 20; i++) {
        assert.equal((await get(`${via(i)}/health`, from)).status, 200)
        assert.equal((await get(`${via(i)}/ready`, from)).status, 200)
      }
      // the storage nodes heartbeat every 250 ms through all this: they stay writable
      assert.equal((await cluster.infra.nodes.writable()).length, 3)
    })
  })
}

describe('a rate limiter that cannot reach Redis', { timeout: 60_000 }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await startCluster({ mode: 'real', worker: false, env: { ...LIMITS, MAYFLY_REDIS_URL: `redis://127.0.0.1:${(await freePorts(1))[0]}` } })
  })
  after(async () => cluster?.close())

  test('fails open for uploads and downloads, closed for password guesses', async () => {
    const from = client()
    for (let i = 0; i < 5; i++) assert.equal((await uploadAs(cluster.url, from)).status, 201, 'uploads go on uncounted')
    const up = await uploadAs(cluster.url, client(), { password: 'pw' })
    for (let i = 0; i < 6; i++) assert.equal((await get(`${cluster.url}/api/download/${String(up.body.id)}`, from, { 'x-mayfly-password': 'pw' })).status, 503)
    const plain = await uploadAs(cluster.url, client())
    for (let i = 0; i < 6; i++) assert.equal((await get(`${cluster.url}/api/download/${String(plain.body.id)}`, from)).status, 200, 'downloads go on uncounted')
    const refused = await get(`${cluster.url}/api/files/${String(up.body.id)}`, from, { 'x-mayfly-password': 'guess' })
    assert.equal(refused.status, 503)
    assert.equal((JSON.parse(refused.body) as { error: string }).error, 'unavailable')
  })
})
