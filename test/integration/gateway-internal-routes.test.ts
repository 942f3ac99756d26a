// The gateway's door for storage nodes, at the route level (app.inject() on
// buildGateway over the embedded adapters): heartbeats register a node, a
// node heard stays up while the metadata store cannot record its heartbeats
// (issue 13), and
// the lookup a copy's target makes before it fetches from a peer (issue 7,
// bug 13) answers only with the cluster secret, only for registered nodes,
// and says whether the node is lost.
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Registry } from 'prom-client'
import { createNodeDirectory } from '../../src/cluster/node-directory.ts'
import { loadConfig, type Config } from '../../src/config.ts'
import { Unavailable } from '../../src/core/errors.ts'
import { createLogger } from '../../src/log.ts'
import type { MetadataStore } from '../../src/ports.ts'
import { buildGateway } from '../../src/services/gateway/app.ts'
import { createInfrastructure, gatewaySettings, type Infrastructure } from '../../src/wiring.ts'
import { waitFor } from '../helpers/wait.ts'

describe('gateway: the internal routes of storage nodes', { timeout: 60_000 }, () => {
  const secret = randomBytes(24).toString('base64url')
  const log = createLogger('silent')
  let dir: string
  let infra: Infrastructure
  let config: Config
  let app: ReturnType<typeof buildGateway>

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-internal-'))
    const env = { MAYFLY_DATA_DIR: dir, MAYFLY_CLUSTER_SECRET: secret, MAYFLY_LOG_LEVEL: 'silent', MAYFLY_NAMESPACE: `t-${randomUUID().slice(0, 8)}` }
    config = loadConfig(env)
    infra = await createInfrastructure(config, log, secret)
    app = buildGateway({
      settings: gatewaySettings(config, secret),
      log,
      metadata: infra.metadata,
      cache: infra.cache,
      rateLimiter: infra.rateLimiter,
      queue: infra.queue,
      blobs: infra.blobs,
      nodes: infra.nodes,
      metrics: new Registry(),
    })
  })
  after(async () => {
    await app?.close()
    await infra?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  const auth = { authorization: `Bearer ${secret}` }
  const registered = (id: string) => async () => (await infra.metadata.listNodes()).some((n) => n.id === id)
  const beat = (id: string, url: string, gateway = app) =>
    gateway.inject({
      method: 'POST',
      url: '/internal/nodes/heartbeat',
      headers: auth,
      payload: { id, url, zone: 'a', version: '0', capacityBytes: 100, freeBytes: 50, usedBytes: 50, blobCount: 1, quarantined: 0 },
    })

  test('a heartbeat registers the node; a bad one or one without the secret is refused and changes nothing', async () => {
    assert.equal((await beat('node-hb', 'http://127.0.0.1:9001')).statusCode, 200)
    // recorded behind the answer
    await waitFor('node-hb registered', registered('node-hb'), 5_000)
    const unauthorized = await app.inject({ method: 'POST', url: '/internal/nodes/heartbeat', payload: { id: 'node-x' } })
    assert.equal(unauthorized.statusCode, 401)
    const bad = await app.inject({ method: 'POST', url: '/internal/nodes/heartbeat', headers: auth, payload: { id: 'node-x', url: 'not a url' } })
    assert.equal(bad.statusCode, 400)
    assert.equal(bad.json().error, 'invalid_request')
    assert.ok(!(await infra.metadata.listNodes()).some((n) => n.id === 'node-x'))
  })

  test('GET /internal/nodes/:id: a registered node with its url and whether it is lost; 404 unknown_node otherwise; 401 without the secret', async () => {
    assert.equal((await beat('node-look', 'http://127.0.0.1:9002')).statusCode, 200)
    await waitFor('node-look registered', registered('node-look'), 5_000)
    const found = await app.inject({ url: '/internal/nodes/node-look', headers: auth })
    assert.equal(found.statusCode, 200)
    assert.deepEqual(found.json(), { id: 'node-look', url: 'http://127.0.0.1:9002', lost: false })

    for (const headers of [{}, { authorization: 'Bearer not-the-secret' }]) {
      const res = await app.inject({ url: '/internal/nodes/node-look', headers })
      assert.equal(res.statusCode, 401)
      assert.equal(res.json().error, 'unauthorized')
    }
    for (const id of ['node-nobody', 'a%2F..%2Fb', 'x'.repeat(65)]) {
      const res = await app.inject({ url: `/internal/nodes/${id}`, headers: auth })
      assert.equal(res.statusCode, 404, id)
      assert.equal(res.json().error, 'unknown_node', id)
    }

    // declared lost by the replication manager: lost, until it beats again
    const lease = await infra.metadata.replication.acquireLease(`${randomUUID()}:replicator`, 'test', 60_000)
    assert.ok(lease !== null)
    await infra.metadata.replication.declareNodeLost('node-look', { name: lease.name, token: lease.token })
    assert.equal((await app.inject({ url: '/internal/nodes/node-look', headers: auth })).json().lost, true)
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal((await beat('node-look', 'http://127.0.0.1:9002')).statusCode, 200)
    await waitFor('node-look no longer lost', async () => (await app.inject({ url: '/internal/nodes/node-look', headers: auth })).json().lost === false, 5_000)
    await lease.release()
  })

  test('a heartbeat is answered with the gateways up (this one once it listens), not the stopped, the silent or the unreachable', async (t) => {
    const listening = buildGateway({ settings: { ...gatewaySettings(config, secret), advertiseUrl: 'http://127.0.0.1:5901' }, log, metadata: infra.metadata, cache: infra.cache, rateLimiter: infra.rateLimiter, queue: infra.queue, blobs: infra.blobs, nodes: infra.nodes, metrics: new Registry() })
    t.after(() => listening.close())
    const peer = (id: string, url: string) => ({ id, url, host: 'h', pid: 1, version: '0', startedAt: new Date() })
    await infra.metadata.gateways.beat(peer('gw-peer', 'http://127.0.0.1:5902'))
    await infra.metadata.gateways.beat(peer('gw-stopped', 'http://127.0.0.1:5903'))
    await infra.metadata.gateways.leave('gw-stopped')
    await infra.metadata.gateways.beat(peer('gw-nowhere', 'http://0.0.0.0:5904'))
    await listening.listen({ host: '127.0.0.1', port: 0 })
    const answer = await waitFor('the gateways in the answer', async () => {
      const res = await beat('node-gw', 'http://127.0.0.1:9004', listening)
      assert.equal(res.statusCode, 200)
      const gateways = (res.json() as { gateways: string[] }).gateways
      return gateways.length > 0 ? gateways : undefined
    }, 5_000)
    assert.deepEqual(answer, ['http://127.0.0.1:5901', 'http://127.0.0.1:5902'])
  })

  test('a node heard stays up while the metadata store cannot record its heartbeats; the record follows when it can (issue 13)', async () => {
    let recording = true
    let refused = 0
    const store = new Proxy(infra.metadata, {
      get(target, prop, receiver) {
        if (prop === 'recordHeartbeat' && !recording) {
          return async () => {
            refused++
            throw new Unavailable('the metadata store is unavailable: paused by the test')
          }
        }
        return Reflect.get(target, prop, receiver) as unknown
      },
    }) satisfies MetadataStore
    const timings = { suspectAfterMs: 400, downAfterMs: 60_000 }
    const nodes = createNodeDirectory({ listNodes: () => store.listNodes(), timings, refreshMs: 50 })
    const paused = buildGateway({ settings: gatewaySettings(config, secret), log, metadata: store, cache: infra.cache, rateLimiter: infra.rateLimiter, queue: infra.queue, blobs: infra.blobs, nodes, metrics: new Registry() })
    after(() => paused.close())
    const stateOf = async () => (await nodes.byId('node-paused'))?.state
    const recordedAgeMs = async () => (await store.listNodes()).find((n) => n.id === 'node-paused')?.heartbeatAgeMs ?? Infinity

    assert.equal((await beat('node-paused', 'http://127.0.0.1:9003', paused)).statusCode, 200)
    await waitFor('node-paused up', async () => (await stateOf()) === 'up', 5_000)

    recording = false
    const pausedUntil = Date.now() + 1_500
    while (Date.now() < pausedUntil) {
      const res = await beat('node-paused', 'http://127.0.0.1:9003', paused)
      assert.equal(res.statusCode, 200, 'a heartbeat is answered though the store cannot record it')
      assert.equal(await stateOf(), 'up', 'heard here: up')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    assert.ok(refused > 0, 'the store was asked and refused')
    assert.ok((await recordedAgeMs()) > timings.suspectAfterMs, 'the store alone would call it suspect')

    recording = true
    assert.equal((await beat('node-paused', 'http://127.0.0.1:9003', paused)).statusCode, 200)
    await waitFor('the heartbeat recorded again', async () => (await recordedAgeMs()) < timings.suspectAfterMs, 5_000)
  })
})
