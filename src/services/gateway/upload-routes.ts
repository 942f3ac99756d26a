// POST /api/upload (DESIGN §3): streams the file to the storage nodes,
// records it once the write quorum has fsynced it, then asks for variants.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { IMAGE_MIME_TYPES, VARIANT_NAMES, type FileRecord } from '../../core/file.ts'
import { UnsupportedMediaType } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import { hashPassword, hashToken, newToken } from '../../core/secrets.ts'
import type { GatewayDeps } from './deps.ts'
import { uploadView } from './file-view.ts'
import { checkDeclaredLength, parseUploadOptions, receiveUpload } from './upload-form.ts'
import type { GatewayMetrics } from './metrics.ts'
import type { FileLookup } from './file-lookup.ts'

export function registerUploadRoutes(app: FastifyInstance, deps: GatewayDeps, metrics: GatewayMetrics, files: FileLookup): void {
  const { settings, metadata, blobs, queue, log } = deps
  const now = deps.now ?? (() => new Date())

  // the body stays a stream: busboy reads it in the handler
  app.addContentTypeParser('multipart/form-data', (_req, _payload, done) => done(null))

  app.post('/api/upload', async (req, reply) => {
    if (!/^multipart\/form-data\s*;/i.test(req.headers['content-type'] ?? '')) {
      throw new UnsupportedMediaType('send the upload as multipart/form-data with a `file` field (curl -F "file=@photo.jpg")')
    }
    checkDeclaredLength(req.headers['content-length'], settings.maxUploadBytes)
    const key = newId()
    // recorded while the bytes travel: one commit fewer on the upload's critical path
    const begun = metadata.beginBlob(key, now())
    begun.catch(() => {}) // awaited below; failures surface there
    // removal waits for the record, so that it never lands after its own abandonment
    const cleanUp = () => void begun.catch(() => {}).then(() => forget(key))
    let upload
    try {
      upload = await receiveUpload(
        req.raw,
        settings.maxUploadBytes,
        (source) => blobs.write(source, { key, maxBytes: settings.maxUploadBytes }),
        cleanUp,
      )
    } catch (err) {
      metrics.uploads.inc({ result: 'rejected' })
      cleanUp()
      throw err
    }
    const { written } = upload
    let file: FileRecord
    try {
      await begun
      const options = parseUploadOptions(upload.fields, settings)
      const createdAt = now()
      const isImage = IMAGE_MIME_TYPES.has(upload.mime)
      const deleteToken = newToken()
      file = await metadata.createFile({
        id: newId(),
        blob: { key, size: written.size, sha256: written.sha256 },
        replicas: written.replicas,
        name: upload.name,
        mime: upload.mime,
        createdAt,
        expiresAt: new Date(createdAt.getTime() + options.expiresInSeconds * 1000),
        maxDownloads: options.maxDownloads,
        passwordHash: options.password === null ? null : await hashPassword(options.password),
        deleteTokenHash: hashToken(deleteToken),
        variants: VARIANT_NAMES.map((name) =>
          isImage ? { name, state: 'pending', reason: null } : { name, state: 'skipped', reason: 'not an image' },
        ),
      })
      recordLateReplicas(file.id, key, written.remaining)
      if (isImage) publishVariantJob(file.id)
      metrics.uploads.inc({ result: 'ok' })
      metrics.uploadBytes.inc(written.size)
      return reply.status(201).send(uploadView(publicBase(req, settings.publicUrl), file, deleteToken))
    } catch (err) {
      metrics.uploads.inc({ result: 'rejected' })
      void written.remaining.then(cleanUp)
      throw err
    }
  })

  /**
   * Removes a blob nobody will reference from every node, then its pending
   * record. If a node or the metadata store cannot be reached the record
   * stays, and the sweeper removes the blob later (its stale-pending scan).
   */
  async function forget(key: string): Promise<void> {
    try {
      // a createFile whose answer was lost (a failover) may have committed: then the bytes are a file's
      const fate = (await metadata.replication.describeBlobs([key])).get(key)
      if (fate !== undefined && fate.kind !== 'pending' && fate.kind !== 'unknown') {
        log.warn({ key }, 'a failed upload was recorded after all (its answer was lost); its bytes stay')
        return
      }
      const nodeIds = (await deps.nodes.all()).map((n) => n.id)
      const removed = await blobs.remove(key, nodeIds)
      if (removed.length === nodeIds.length) await metadata.abandonBlob(key)
    } catch (err) {
      log.warn({ err, key }, 'cleanup of a failed upload is left to the sweeper')
    }
  }

  function recordLateReplicas(fileId: string, key: string, remaining: Promise<string[]>): void {
    remaining
      .then((late) => Promise.all(late.map((nodeId) => metadata.addReplica(key, nodeId))))
      .then(() => files.invalidate(fileId))
      .catch((err: unknown) => log.warn({ err, key }, 'could not record a late replica; the replicator will find it'))
  }

  function publishVariantJob(fileId: string): void {
    // the upload is safe already; a job lost here is found again by the worker's pending-variant scan
    queue.publish(settings.variantTopic, { fileId }).catch((err: unknown) => log.warn({ err, fileId }, 'variant job not published'))
  }
}

/** The base of the links we hand out: the configured public url, else the request's own origin. */
export function publicBase(req: FastifyRequest, configured: string | undefined): string {
  if (configured !== undefined) return configured.replace(/\/+$/, '')
  return `${req.protocol}://${req.host}`
}
