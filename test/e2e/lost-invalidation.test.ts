// A link that died through one gateway is refused by every gateway at the
// very next request, even when the cache missed the invalidation (issue 7,
// bug 2; issue 8): Redis is cut off from the first gateway (a TCP proxy in
// between) exactly while the DELETE, or the claim that uses a link up, tries
// to drop the cached entry, so Redis keeps the live record. A second gateway,
// which reaches Redis directly all along, and the first once Redis is back,
// must not believe the entry: the cache never overrules the metadata store
// (file-lookup.ts says what holds).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { startGateway } from '../../src/cli/services.ts'
import { loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import { createInfrastructure, type Infrastructure } from '../../src/wiring.ts'
import { REDIS_URL, startCluster, type Cluster } from '../helpers/cluster.ts'
import { upload, waitFor } from '../helpers/http.ts'
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts'

describe('an invalidation lost while Redis was unreachable', { timeout: 120_000 }, () => {
  let cluster: Cluster
  let proxy: TcpProxy
  let other: { app: FastifyInstance; infra: Infrastructure; url: string }

  before(async () => {
    proxy = await startTcpProxy(6379)
    cluster = await startCluster({
      mode: 'real',
      worker: false,
      env: { MAYFLY_REDIS_URL: `redis://127.0.0.1:${proxy.port}`, MAYFLY_CACHE_TTL_SECONDS: '60' },
    })
    // a second gateway of the cluster, with connections of its own, to Redis directly
    const config = loadConfig({ ...cluster.env, MAYFLY_REDIS_URL: REDIS_URL, MAYFLY_HOST: '127.0.0.1' })
    const log = createLogger('silent')
    const infra = await createInfrastructure(config, log, cluster.secret)
    const app = await startGateway(config, log, infra, cluster.secret, 0)
    other = { app, infra, url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` }
  })
  after(async () => {
    await other?.app.close()
    await other?.infra.close()
    await cluster?.close()
    await proxy?.close()
  })

  /** the same link through the other gateway */
  const onOther = (url: string) => url.replace(cluster.url, other.url)

  /** Cuts Redis off for the length of `change`, then waits until the gateway reaches it again. */
  async function withRedisCut(change: () => Promise<void>): Promise<void> {
    await proxy.cut()
    try {
      await change()
    } finally {
      await proxy.restore()
    }
    // a write that reads back means the gateway's connection works again
    let i = 0
    await waitFor('the gateway to reach Redis again', async () => {
      const probe = `probe-${++i}`
      await cluster.infra.cache.set('lost-invalidation-probe', probe, 10_000)
      return (await cluster.infra.cache.get('lost-invalidation-probe')) === probe ? true : undefined
    })
  }

  /** The record the shared cache holds for the file (white box: proves the invalidation really was lost). */
  async function cachedFile(id: string): Promise<Record<string, unknown> | null> {
    const entry = await cluster.infra.cache.get(`file:${id}`)
    return entry === null ? null : (JSON.parse(entry) as { file: Record<string, unknown> }).file
  }

  /**
   * HEADs the link (which counts nothing) until its entry is cached for good:
   * the upload's third copy lands after the answer and invalidates the entry
   * once recorded, so wait for an entry that lists all three.
   */
  async function fillCache(id: string, url: string): Promise<void> {
    await waitFor('the live record cached with its three replicas', async () => {
      assert.equal((await fetch(url, { method: 'HEAD' })).status, 200)
      await sleep(200)
      const entry = await cluster.infra.cache.get(`file:${id}`)
      return entry !== null && (JSON.parse(entry) as { replicas: string[] }).replicas.length === 3 ? true : undefined
    })
  }

  test('a deleted link answers 410 on the other gateway at once, and on the one that deleted it', async () => {
    const { status, body } = await upload(cluster.url, Buffer.from('soon deleted\n'))
    assert.equal(status, 201, JSON.stringify(body))
    const url = String(body.download_url)
    await fillCache(String(body.id), url)
    await withRedisCut(async () => {
      const del = await fetch(`${cluster.url}/api/files/${String(body.id)}`, { method: 'DELETE', headers: { 'x-delete-token': String(body.delete_token) } })
      assert.equal(del.status, 204)
    })
    assert.equal((await cachedFile(String(body.id)))?.deletedAt, null, 'the cache still shows the link alive')
    assert.equal((await fetch(onOther(url))).status, 410, 'the other gateway refuses it')
    assert.equal((await fetch(onOther(url), { method: 'HEAD' })).status, 410)
    assert.equal((await fetch(url)).status, 410)
    assert.equal((await fetch(url, { method: 'HEAD' })).status, 410)
  })

  test('a link used up by its last download answers 410 on both gateways, HEAD included', async () => {
    const { status, body } = await upload(cluster.url, Buffer.from('one download\n'), { max_downloads: '1' })
    assert.equal(status, 201, JSON.stringify(body))
    const url = String(body.download_url)
    await fillCache(String(body.id), url)
    await withRedisCut(async () => {
      const res = await fetch(url)
      assert.equal(res.status, 200)
      await res.arrayBuffer()
    })
    assert.equal((await cachedFile(String(body.id)))?.downloads, 0, 'the cache still shows the download unclaimed')
    assert.equal((await fetch(onOther(url), { method: 'HEAD' })).status, 410, 'the other gateway refuses it')
    assert.equal((await fetch(onOther(url))).status, 410)
    assert.equal((await fetch(url, { method: 'HEAD' })).status, 410)
    assert.equal((await fetch(url)).status, 410)
  })

  test('an expired link answers 410 on both gateways the moment it expires, its entry still cached', async () => {
    const { status, body } = await upload(cluster.url, Buffer.from('short-lived\n'), { expires_in: '2' })
    assert.equal(status, 201, JSON.stringify(body))
    const url = String(body.download_url)
    await fillCache(String(body.id), url)
    const expiresAt = Date.parse(String(body.expires_at))
    await sleep(Math.max(0, expiresAt - Date.now()) + 50)
    assert.ok((await cachedFile(String(body.id))) !== null, 'the entry is still cached')
    assert.equal((await fetch(onOther(url))).status, 410)
    assert.equal((await fetch(url)).status, 410)
  })
})
