// The variant job handler on real adapters, no fakes (STYLE: the embedded
// adapters are the fakes): embedded metadata, the replicated BlobStore and
// three storage nodes as child processes, from test/helpers/cluster.ts with no
// worker running, so the test calls the handler itself. It spawns processes,
// so it could as well live in test/integration.
import { after, before, describe, test } from 'node:test'
import { PHOTOS } from '../helpers/http.ts'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import sharp from 'sharp'
import { PermanentJobError } from '../../src/core/errors.ts'
import { derivedKey, newId } from '../../src/core/ids.ts'
import type { FileRecord } from '../../src/core/file.ts'
import { createLogger } from '../../src/log.ts'
import type { BlobStore, JobHandler } from '../../src/ports.ts'
import { createVariantJobHandler } from '../../src/services/worker/variant-job.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'

const PHOTO = join(PHOTOS, 'bythewater-2560x1600.jpg')

describe('variant job handler', { timeout: 120_000 }, () => {
  let cluster: Cluster
  let handler: JobHandler
  let opens = 0
  let writes = 0

  before(async () => {
    cluster = await startCluster({ mode: 'embedded', worker: false })
    const real = cluster.infra.blobs
    // the real store, counted: "no work" means no read and no write
    const counted: BlobStore = {
      open: (...args) => { opens++; return real.open(...args) },
      write: (...args) => { writes++; return real.write(...args) },
      remove: (...args) => real.remove(...args),
    }
    handler = createVariantJobHandler({
      metadata: cluster.infra.metadata,
      blobs: counted,
      log: createLogger('silent'),
      maxUploadBytes: 64 * 1024 * 1024,
    })
  })
  after(() => cluster?.close())

  async function storeFile(data: Buffer, mime: string): Promise<FileRecord> {
    const { metadata, blobs } = cluster.infra
    const key = newId()
    const now = new Date()
    await metadata.beginBlob(key, now)
    const written = await blobs.write(Readable.from(data), { key, maxBytes: data.length })
    await written.remaining
    return metadata.createFile({
      id: newId(),
      blob: { key, size: written.size, sha256: written.sha256 },
      replicas: [...written.replicas, ...(await written.remaining)],
      name: 'upload',
      mime,
      createdAt: now,
      expiresAt: new Date(now.getTime() + 3600_000),
      maxDownloads: null,
      passwordHash: null,
      deleteTokenHash: 'x',
      variants: [{ name: 'thumbnail', state: 'pending', reason: null }, { name: 'compressed', state: 'pending', reason: null }],
    })
  }

  async function variants(fileId: string) {
    return Object.fromEntries((await cluster.infra.metadata.listVariants(fileId)).map((v) => [v.name, v]))
  }

  async function readBlob(key: string, size: number, sha256: string): Promise<Buffer> {
    const replicas = await cluster.infra.metadata.listReplicas(key)
    const stream = await cluster.infra.blobs.open({ key, size, sha256 }, replicas)
    const chunks: Buffer[] = []
    for await (const chunk of stream) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks)
  }

  test('a photo gets a stored thumbnail and compressed copy; a second run does nothing', async () => {
    const original = readFileSync(PHOTO)
    const file = await storeFile(original, 'image/jpeg')
    await handler({ fileId: file.id }, { attempt: 1 })

    const v = await variants(file.id)
    for (const [name, mime, box] of [['thumbnail', 'image/webp', 256], ['compressed', 'image/jpeg', 2048]] as const) {
      const variant = v[name]
      assert.equal(variant?.state, 'ready', `${name}: ${variant?.reason}`)
      assert.equal(variant.mime, mime)
      assert.ok(variant.blob !== null)
      assert.equal(variant.blob.key, derivedKey(file.blobKey, name))
      const replicas = await cluster.infra.metadata.listReplicas(variant.blob.key)
      assert.equal(replicas.length, 3, `${name} on every node`)
      const bytes = await readBlob(variant.blob.key, variant.blob.size, variant.blob.sha256)
      assert.equal(createHash('sha256').update(bytes).digest('hex'), variant.blob.sha256)
      const meta = await sharp(bytes).metadata()
      assert.equal(`image/${meta.format}`, mime)
      assert.equal(Math.max(meta.width, meta.height), box)
    }
    assert.ok((v.compressed?.blob?.size ?? Infinity) < original.length)

    const [o, w] = [opens, writes]
    await handler({ fileId: file.id }, { attempt: 2 })
    assert.deepEqual([opens, writes], [o, w], 'redelivery does no work')
    assert.deepEqual(await variants(file.id), v)
  })

  test('a file that is not an image: both skipped', async () => {
    const file = await storeFile(Buffer.from('just text\n'), 'text/plain')
    const o = opens
    await handler({ fileId: file.id }, { attempt: 1 })
    const v = await variants(file.id)
    assert.deepEqual([v.thumbnail?.state, v.compressed?.state], ['skipped', 'skipped'])
    assert.equal(v.thumbnail?.reason, 'not an image')
    assert.equal(opens, o, 'the original is not read')
  })

  test('random bytes labelled image/jpeg: both failed, and the job completes', async () => {
    const file = await storeFile(randomBytes(32 * 1024), 'image/jpeg')
    await handler({ fileId: file.id }, { attempt: 1 })
    const v = await variants(file.id)
    assert.deepEqual([v.thumbnail?.state, v.compressed?.state], ['failed', 'failed'])
    assert.match(v.thumbnail?.reason ?? '', /not a readable image/)
  })

  test('an original gone from every node: both failed, not retried forever', async () => {
    const file = await storeFile(readFileSync(PHOTO), 'image/jpeg')
    await cluster.infra.blobs.remove(file.blobKey, await cluster.infra.metadata.listReplicas(file.blobKey))
    await handler({ fileId: file.id }, { attempt: 1 })
    const v = await variants(file.id)
    assert.deepEqual([v.thumbnail?.state, v.compressed?.state], ['failed', 'failed'])
    assert.match(v.thumbnail?.reason ?? '', /could not be found/)
  })

  test('a tiny image: thumbnail ready, compressed skipped as not smaller', async () => {
    const tiny = await sharp({ create: { width: 10, height: 10, channels: 3, background: '#336699' } }).jpeg().toBuffer()
    const file = await storeFile(tiny, 'image/jpeg')
    await handler({ fileId: file.id }, { attempt: 1 })
    const v = await variants(file.id)
    assert.equal(v.thumbnail?.state, 'ready')
    assert.deepEqual([v.compressed?.state, v.compressed?.reason, v.compressed?.blob], ['skipped', 'not smaller than the original', null])
  })

  test('a deleted file gets no variant', async () => {
    const file = await storeFile(readFileSync(PHOTO), 'image/jpeg')
    await cluster.infra.metadata.deleteFile(file.id, new Date())
    const [o, w] = [opens, writes]
    await handler({ fileId: file.id }, { attempt: 1 })
    assert.deepEqual([opens, writes], [o, w])
    const v = await variants(file.id)
    assert.deepEqual([v.thumbnail?.state, v.compressed?.state], ['pending', 'pending'])
  })

  test('an unknown file is nothing to do; a job without a file id is poison', async () => {
    await handler({ fileId: newId() }, { attempt: 1 })
    await assert.rejects(handler({}, { attempt: 1 }), PermanentJobError)
    await assert.rejects(handler({ fileId: '../etc/passwd' }, { attempt: 1 }), PermanentJobError)
  })
})
