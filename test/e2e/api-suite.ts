// The public API (DESIGN §3) against a running cluster, the same suite for the
// embedded mode and for real PostgreSQL, Redis and RabbitMQ (api-*.test.ts).
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { readdir, readFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import sharp from 'sharp'
import { newId } from '../../src/core/ids.ts'
import { createLogger } from '../../src/log.ts'
import { createSweeper } from '../../src/services/worker/sweeper.ts'
import { startCluster, type Cluster, type Mode } from '../helpers/cluster.ts'
import { getJson, photoPaths, sha256, upload, waitFor } from '../helpers/http.ts'

/** Every committed blob and every temp file on a node's disk. */
export async function diskState(dataDir: string): Promise<{ blobs: string[]; temp: string[] }> {
  const list = async (dir: string) => (await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).map((e) => e.name)
  return { blobs: await list(join(dataDir, 'blobs')), temp: await list(join(dataDir, 'tmp')) }
}

async function allBlobs(cluster: Cluster): Promise<string[]> {
  return (await Promise.all(cluster.nodes.map(async (n) => (await diskState(n.dataDir)).blobs))).flat().sort()
}

export function apiSuite(mode: Mode): void {
  describe(`public API (${mode})`, { timeout: 240_000 }, () => {
    let cluster: Cluster
    let base: string
    let photo: string
    let photoBytes: Buffer

    before(async () => {
      cluster = await startCluster({
        mode,
        // as `mayfly up` runs: gateway, worker and replication manager
        replicator: true,
        env: {
          MAYFLY_MAX_UPLOAD_BYTES: String(8 * 1024 * 1024),
          MAYFLY_DELETE_GRACE_SECONDS: '1',
          MAYFLY_MAX_EXPIRES_IN: '604800',
          MAYFLY_CLIENT_TIMEOUT_MS: '1000',
        },
      })
      base = cluster.url
      photo = (await photoPaths()).find((p) => p.includes('autumn'))!
      photoBytes = await readFile(photo)
    })
    after(async () => cluster?.close())

    test('upload answers 201 with the contract fields, stored on two zones at once and three soon', async () => {
      const { status, body } = await upload(base, photo)
      assert.equal(status, 201, JSON.stringify(body))
      for (const field of ['id', 'name', 'size', 'mime', 'sha256', 'created_at', 'expires_at', 'max_downloads', 'downloads_remaining', 'download_url', 'info_url', 'share_url', 'delete_token']) {
        assert.ok(field in body, `missing ${field}`)
      }
      assert.match(String(body.id), /^[A-Za-z0-9_-]{22}$/)
      assert.equal(body.size, photoBytes.length)
      assert.equal(body.sha256, sha256(photoBytes))
      assert.equal(body.mime, 'image/jpeg')
      assert.equal(body.max_downloads, null)
      const expires = Date.parse(String(body.expires_at)) - Date.parse(String(body.created_at))
      assert.equal(expires, 86400_000)
      const key = (await cluster.infra.metadata.getFile(String(body.id)))!.blobKey
      const atAck = await cluster.infra.metadata.listReplicas(key)
      assert.ok(atAck.length >= 2)
      const nodes = await cluster.infra.nodes.all()
      const zones = new Set(nodes.filter((n) => atAck.includes(n.id)).map((n) => n.zone))
      assert.ok(zones.size >= 2, 'replicas in distinct zones')
      await waitFor('three replicas', async () => ((await cluster.infra.metadata.listReplicas(key)).length === 3 ? true : undefined))
    })

    test('download returns the same bytes with the right headers; HEAD and info count nothing', async () => {
      const { body } = await upload(base, photo, { max_downloads: '2' })
      const id = String(body.id)
      const head = await fetch(`${base}/api/download/${id}`, { method: 'HEAD' })
      assert.equal(head.status, 200)
      assert.equal(head.headers.get('content-length'), String(photoBytes.length))
      const info = await getJson(`${base}/api/files/${id}`)
      assert.equal(info.body.downloads, 0)
      const res = await fetch(String(body.download_url))
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('etag'), `"${sha256(photoBytes)}"`)
      assert.equal(res.headers.get('content-type'), 'image/jpeg')
      assert.match(res.headers.get('content-disposition')!, /autumn-2560x1600\.jpg/)
      assert.equal(sha256(new Uint8Array(await res.arrayBuffer())), sha256(photoBytes))
      const after1 = await getJson(`${base}/api/files/${id}`)
      assert.equal(after1.body.downloads, 1)
      assert.equal(after1.body.downloads_remaining, 1)
      assert.equal(after1.body.status, 'active')
      const share = await fetch(String(body.share_url))
      assert.equal(share.status, 200)
      assert.match(await share.text(), /autumn-2560x1600\.jpg/)
      assert.equal((await getJson(`${base}/api/files/${id}`)).body.downloads, 1, 'the share page counts nothing')
    })

    test('a JPEG gets a thumbnail and a compressed variant; a text file gets none', async () => {
      const { body } = await upload(base, photo)
      const id = String(body.id)
      const variants = await waitFor('variants ready', async () => {
        const info = await getJson(`${base}/api/files/${id}`)
        const vs = info.body.variants as { name: string; state: string }[]
        return vs.every((v) => v.state !== 'pending') ? vs : undefined
      }, 30_000)
      assert.deepEqual(variants.map((v) => [v.name, v.state]).sort(), [['compressed', 'ready'], ['thumbnail', 'ready']])
      const thumb = await fetch(`${base}/api/files/${id}/thumbnail`)
      assert.equal(thumb.status, 200)
      assert.equal(thumb.headers.get('content-type'), 'image/webp')
      const meta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata()
      assert.ok(meta.width <= 256 && meta.height <= 256)
      const compressed = await fetch(`${base}/api/files/${id}/variants/compressed`)
      assert.equal(compressed.status, 200)
      assert.ok(Number(compressed.headers.get('content-length')) < photoBytes.length)

      const text = await upload(base, Buffer.from('hello, world\n'), {}, 'hello.txt', 'text/plain')
      const info = await getJson(`${base}/api/files/${String(text.body.id)}`)
      assert.deepEqual((info.body.variants as { state: string }[]).map((v) => v.state), ['skipped', 'skipped'])
      assert.equal((await fetch(`${base}/api/files/${String(text.body.id)}/thumbnail`)).status, 404)
    })

    test('N concurrent downloaders of a link with max_downloads = N - k: exactly N - k succeed', async () => {
      const data = Buffer.alloc(64 * 1024, 7)
      const { body } = await upload(base, data, { max_downloads: '6' })
      const results = await Promise.all(
        Array.from({ length: 15 }, async () => {
          const res = await fetch(String(body.download_url))
          const bytes = new Uint8Array(await res.arrayBuffer())
          return { status: res.status, ok: res.status === 200 && sha256(bytes) === sha256(data) }
        }),
      )
      assert.equal(results.filter((r) => r.ok).length, 6)
      assert.ok(results.filter((r) => !r.ok).every((r) => r.status === 410))
      const gone = await getJson(String(body.download_url))
      assert.deepEqual([gone.status, gone.body.error], [410, 'download_limit_reached'])
    })

    test('Range works on unlimited links and is no way around a limit', async () => {
      const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 256))
      const open = await upload(base, data)
      const part = await fetch(String(open.body.download_url), { headers: { range: 'bytes=100-199' } })
      assert.equal(part.status, 206)
      assert.equal(part.headers.get('content-range'), 'bytes 100-199/1000')
      assert.deepEqual(Buffer.from(await part.arrayBuffer()), data.subarray(100, 200))
      const bad = await fetch(String(open.body.download_url), { headers: { range: 'bytes=5000-' } })
      assert.equal(bad.status, 416)

      const limited = await upload(base, data, { max_downloads: '1' })
      const whole = await fetch(String(limited.body.download_url), { headers: { range: 'bytes=0-9' } })
      assert.equal(whole.status, 200)
      assert.equal((await whole.arrayBuffer()).byteLength, 1000)
      assert.equal((await fetch(String(limited.body.download_url), { headers: { range: 'bytes=10-' } })).status, 410)
    })

    test('a link dies at its time, and its bytes and variants leave every node after the grace period', async () => {
      const { body } = await upload(base, photo, { expires_in: '2' })
      const id = String(body.id)
      await waitFor('variants', async () => {
        const vs = (await getJson(`${base}/api/files/${id}`)).body.variants as { state: string }[]
        return vs.every((v) => v.state !== 'pending') ? true : undefined
      }, 30_000)
      const file = (await cluster.infra.metadata.getFile(id))!
      const variants = await cluster.infra.metadata.listVariants(id)
      const keys = [file.blobKey, ...variants.map((v) => v.blob!.key)]
      const held = async () => (await allBlobs(cluster)).filter((k) => keys.includes(k))
      await waitFor('three copies of the original and of each variant', async () => ((await held()).length === 9 ? true : undefined))
      const dead = await waitFor('expiry', async () => {
        const res = await fetch(String(body.download_url), { method: 'HEAD' })
        return res.status === 410 ? getJson(String(body.download_url)) : undefined
      })
      assert.equal(dead.body.error, 'expired')
      assert.equal((await fetch(`${base}/api/files/${id}/thumbnail`)).status, 410)
      assert.equal((await fetch(String(body.share_url))).status, 410)
      await waitFor('bytes removed from every node', async () => ((await held()).length === 0 ? true : undefined), 30_000)
      // the sweeper marks the file purged right after the last copy is gone
      await waitFor('file marked purged', async () => ((await cluster.infra.metadata.getFile(id))?.purgedAt != null ? true : undefined))
    })

    test('one sweeper at a time: while another holds the lease, a sweep does nothing', async () => {
      const sweeper = cluster.worker!.sweeper
      const lockName = `${cluster.config.MAYFLY_NAMESPACE}:sweeper`
      const held = await waitFor('the sweeper lease', () => cluster.infra.lock.acquire(lockName, 30_000).then((l) => l ?? undefined))
      try {
        assert.equal((await sweeper.sweepOnce()).ran, false)
      } finally {
        await held.release()
      }
      assert.equal((await sweeper.sweepOnce()).ran, true)
    })

    test('a sweeper whose lease a later holder used on the nodes deletes nothing (its deletes are fenced there)', async () => {
      const ns = cluster.config.MAYFLY_NAMESPACE
      // the cluster's own sweeper held off for the test
      const held = await waitFor('the sweeper lease', () => cluster.infra.lock.acquire(`${ns}:sweeper`, 60_000).then((l) => l ?? undefined))
      try {
        const { body } = await upload(base, Buffer.from('swept by the rightful holder only\n'))
        const file = (await cluster.infra.metadata.getFile(String(body.id)))!
        await waitFor('three copies', async () => ((await allBlobs(cluster)).filter((k) => k === file.blobKey).length === 3 ? true : undefined))
        const del = await fetch(`${base}/api/files/${String(body.id)}`, { method: 'DELETE', headers: { 'x-delete-token': String(body.delete_token) } })
        assert.equal(del.status, 204)
        // a later holder of the lease `name` (an hour's worth of tokens ahead) has spoken to every node
        const name = `${ns}:sweeper-superseded`
        for (const n of cluster.nodes) await cluster.infra.client.delete(n.url, newId(), { fence: { name, token: Date.now() + 3_600_000 } })
        const late = createSweeper({
          metadata: cluster.infra.metadata,
          blobs: cluster.infra.blobs,
          nodes: cluster.infra.nodes,
          lock: cluster.infra.lock,
          log: createLogger('silent'),
          graceMs: 1000,
          intervalMs: 1000,
          gatewayDeadAfterMs: 20_000,
          lockName: name,
        })
        await new Promise((resolve) => setTimeout(resolve, 1_500)) // past the grace period
        const result = await late.sweepOnce()
        assert.equal(result.ran, true)
        assert.deepEqual([result.purgedFiles, result.removedReplicas], [0, 0])
        assert.equal((await allBlobs(cluster)).filter((k) => k === file.blobKey).length, 3, 'every copy is still there')
        assert.equal((await cluster.infra.metadata.getFile(file.id))?.purgedAt, null)
      } finally {
        await held.release()
      }
    })

    test('delete needs the token; afterwards the link is gone', async () => {
      const { body } = await upload(base, Buffer.from('secret plans'))
      const url = `${base}/api/files/${String(body.id)}`
      assert.equal((await getJson(url, { method: 'DELETE' })).status, 401)
      assert.equal((await getJson(url, { method: 'DELETE', headers: { 'x-delete-token': 'nope' } })).status, 403)
      assert.equal((await fetch(String(body.download_url))).status, 200)
      const del = await fetch(url, { method: 'DELETE', headers: { 'x-delete-token': String(body.delete_token) } })
      assert.equal(del.status, 204)
      const gone = await getJson(String(body.download_url))
      assert.deepEqual([gone.status, gone.body.error], [410, 'deleted'])
    })

    test('password-protected links', async () => {
      const { body } = await upload(base, Buffer.from('for your eyes only'), { password: 'hunter2' })
      const url = String(body.download_url)
      const none = await getJson(url)
      assert.deepEqual([none.status, none.body.error], [401, 'password_required'])
      const wrong = await getJson(url, { headers: { 'x-mayfly-password': 'hunter3' } })
      assert.deepEqual([wrong.status, wrong.body.error], [401, 'wrong_password'])
      // its info says only that it needs a password, unless the password comes along
      const info = await getJson(String(body.info_url))
      assert.deepEqual([info.status, info.body.password_protected, info.body.name, info.body.sha256, info.body.replicas], [200, true, undefined, undefined, undefined])
      const unlocked = await getJson(String(body.info_url), { headers: { 'x-mayfly-password': 'hunter2' } })
      assert.equal(unlocked.body.sha256, body.sha256)
      const right = await fetch(url, { headers: { 'x-mayfly-password': 'hunter2' } })
      assert.equal(await right.text(), 'for your eyes only')
      const form = await fetch(`${base}/f/${String(body.id)}/download`, { method: 'POST', body: new URLSearchParams({ password: 'hunter2' }) })
      assert.equal(await form.text(), 'for your eyes only')
    })

    test('active content is never served inline', async () => {
      const { body } = await upload(base, Buffer.from('<script>alert(1)</script>'), {}, 'x.html', 'text/html')
      const res = await fetch(String(body.download_url))
      assert.equal(res.headers.get('content-type'), 'application/octet-stream')
      assert.match(res.headers.get('content-disposition')!, /^attachment/)
      assert.match(res.headers.get('content-security-policy')!, /sandbox/)
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
    })

    test('bad input gets a clear error and leaves nothing on any node', async () => {
      const before = await allBlobs(cluster)
      const expect = async (res: { status: number; body: Record<string, unknown> }, status: number, code: string) => {
        assert.equal(res.status, status, JSON.stringify(res.body))
        assert.equal(res.body.error, code)
        assert.equal(typeof res.body.message, 'string')
      }
      const big = Buffer.alloc(9 * 1024 * 1024, 1)
      await expect(await upload(base, big), 413, 'too_large')
      const twoFiles = new FormData()
      twoFiles.append('file', new Blob(['a']), 'a')
      twoFiles.append('file', new Blob(['b']), 'b')
      await expect(await getJson(`${base}/api/upload`, { method: 'POST', body: twoFiles }), 400, 'duplicate_file')
      const noFile = new FormData()
      noFile.append('max_downloads', '3')
      await expect(await getJson(`${base}/api/upload`, { method: 'POST', body: noFile }), 400, 'missing_file')
      const badFields: Record<string, string>[] = [{ max_downloads: '0' }, { max_downloads: 'ten' }, { expires_in: '-5' }, { expires_in: '1.5' }, { colour: 'blue' }]
      for (const fields of badFields) {
        await expect(await upload(base, Buffer.from('x'), fields), 400, Object.keys(fields)[0] === 'colour' ? 'unknown_field' : 'invalid_field')
      }
      await expect(await getJson(`${base}/api/upload`, { method: 'POST', body: 'plain', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type')
      await expect(await getJson(`${base}/api/download/../../etc/passwd`), 404, 'not_found')
      await expect(await getJson(`${base}/api/download/not-an-id`), 404, 'not_found')
      await expect(await getJson(`${base}/api/download/AAAAAAAAAAAAAAAAAAAAAA`), 404, 'not_found')
      await expect(await getJson(`${base}/api/files/AAAAAAAAAAAAAAAAAAAAAA`), 404, 'not_found')
      // what the failed uploads wrote is removed in the background
      // (earlier tests' dead files may be purged meanwhile: nothing may be added, some may go)
      await waitFor('failed uploads cleaned', async () => ((await allBlobs(cluster)).every((k) => before.includes(k)) ? true : undefined))
      for (const node of cluster.nodes) assert.deepEqual((await diskState(node.dataDir)).temp, [])
    })

    test('a corrupt JPEG is stored as a plain file: its variants fail, its bytes download', async () => {
      const truncated = photoBytes.subarray(0, Math.floor(photoBytes.length / 3))
      const { status, body } = await upload(base, truncated, {}, 'broken.jpg', 'image/jpeg')
      assert.equal(status, 201)
      const variants = await waitFor('variants settled', async () => {
        const vs = (await getJson(`${base}/api/files/${String(body.id)}`)).body.variants as { state: string }[]
        return vs.every((v) => v.state !== 'pending') ? vs : undefined
      }, 30_000)
      assert.deepEqual(variants.map((v) => v.state), ['failed', 'failed'])
      const res = await fetch(String(body.download_url))
      assert.equal(sha256(new Uint8Array(await res.arrayBuffer())), sha256(truncated))
    })

    test('a client that stalls mid-upload is cut off and leaves nothing behind', async () => {
      const before = await allBlobs(cluster)
      const { port } = new URL(base)
      const socket = connect(Number(port), '127.0.0.1')
      const boundary = 'stall-boundary'
      const head = `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="slow.bin"\r\ncontent-type: application/octet-stream\r\n\r\n`
      socket.write(
        `POST /api/upload HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: multipart/form-data; boundary=${boundary}\r\n` +
          `content-length: ${head.length + 5_000_000}\r\n\r\n${head}${'x'.repeat(100_000)}`,
      )
      const started = Date.now()
      await once(socket, 'close')
      const waited = Date.now() - started
      assert.ok(waited >= 900 && waited < 10_000, `cut off after ${waited} ms (timeout 1000 ms)`)
      await waitFor('stalled upload cleaned', async () => ((await allBlobs(cluster)).every((k) => before.includes(k)) ? true : undefined))
      for (const node of cluster.nodes) await waitFor('no temp files', async () => ((await diskState(node.dataDir)).temp.length === 0 ? true : undefined))
    })

    test('expires_in is capped at the server maximum', async () => {
      const { body } = await upload(base, Buffer.from('x'), { expires_in: String(10 * 86400) })
      assert.equal(Date.parse(String(body.expires_at)) - Date.parse(String(body.created_at)), 604800_000)
    })

    test('health, readiness, nodes, cluster and metrics', async () => {
      assert.equal((await fetch(`${base}/health`)).status, 200)
      const ready = await getJson(`${base}/ready`)
      assert.equal(ready.status, 200, JSON.stringify(ready.body))
      // started as `mayfly gateway` is: the cluster status needs the cluster secret (MAYFLY_PUBLIC_STATUS unset)
      const auth = { headers: { authorization: `Bearer ${cluster.secret}` } }
      for (const path of ['/api/nodes', '/api/cluster', '/metrics', '/admin']) {
        const refused = await getJson(`${base}${path}`)
        assert.deepEqual([refused.status, refused.body.error], [401, 'unauthorized'], path)
      }
      const nodes = (await getJson(`${base}/api/nodes`, auth)).body.nodes as { zone: string; state: string }[]
      assert.deepEqual(nodes.map((n) => n.zone).sort(), ['a', 'b', 'c'])
      assert.ok(nodes.every((n) => n.state === 'up'))
      const overview = (await getJson(`${base}/api/cluster`, auth)).body
      for (const part of ['metadata', 'cache', 'queue', 'storage_nodes', 'replication', 'workers']) assert.ok(part in overview, part)
      const replication = await waitFor('the replication manager active', async () => {
        const r = (await getJson(`${base}/api/cluster`, auth)).body.replication as { manager: { active: boolean }; blobs_below_factor: unknown }
        // the backlog is the manager's count, published a moment after it took the lease
        return r.manager.active && r.blobs_below_factor !== null ? (r as unknown as Record<string, unknown>) : undefined
      })
      for (const field of ['blobs_below_factor', 'bytes_to_copy', 'blobs_above_factor', 'copy_rate_bytes_per_second']) {
        assert.equal(typeof replication[field], 'number', field)
      }
      const metrics = await (await fetch(`${base}/metrics`, auth)).text()
      assert.match(metrics, /mayfly_uploads_total\{result="ok"\} \d+/)
      assert.match(metrics, /mayfly_storage_nodes\{state="up"\} 3/)
      assert.match(metrics, /mayfly_replication_manager_active 1/)
      assert.match(metrics, /mayfly_replication_blobs\{state="below_factor"\} \d+/)
      // the dashboard: its script at least parses (it runs in the browser)
      const admin = await (await fetch(`${base}/admin`, auth)).text()
      const script = /<script>([\s\S]*)<\/script>/.exec(admin)?.[1]
      assert.ok(script !== undefined)
      assert.doesNotThrow(() => new Function(script))
    })
  })
}
