// POST /api/upload (DESIGN §3): streams the file to the storage nodes,
// records it once the write quorum has fsynced it, then asks for variants.
import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { IMAGE_MIME_TYPES, VARIANT_NAMES, type FileRecord } from '../../core/file.ts'
import { MayflyError, UnsupportedMediaType } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import { hashPassword, hashToken, newToken } from '../../core/secrets.ts'
import type { FailedWrite, WrittenBlob } from '../../ports.ts'
import type { GatewayDeps } from './deps.ts'
import { uploadView } from './file-view.ts'
import { checkDeclaredLength, CLIENT_GONE, receiveUpload, type ReceivedUpload } from './upload-form.ts'
import type { GatewayMetrics } from './metrics.ts'
import type { FileLookup } from './file-lookup.ts'
import type { RateLimits } from './rate-limits.ts'

export interface UploadRouteParts {
  metrics: GatewayMetrics
  files: FileLookup
  limits: RateLimits
  /** this gateway's id in the registry: its pending uploads are cleaned up by the cluster if it dies */
  gatewayId: string
}

export function registerUploadRoutes(app: FastifyInstance, deps: GatewayDeps, parts: UploadRouteParts): void {
  const { metrics, files, limits, gatewayId } = parts
  const { settings, metadata, blobs, queue, log } = deps
  const now = deps.now ?? (() => new Date())

  // the body stays a stream: busboy reads it in the handler
  app.addContentTypeParser('multipart/form-data', (_req, _payload, done) => done(null))

  app.post('/api/upload', async (req, reply) => {
    if (!/^multipart\/form-data\s*;/i.test(req.headers['content-type'] ?? '')) {
      throw new UnsupportedMediaType('send the upload as multipart/form-data with a `file` field (curl -F "file=@photo.jpg")')
    }
    checkDeclaredLength(req.headers['content-length'], settings.maxUploadBytes)
    await limits.take(req, 'upload')
    const key = newId()
    /** set when the file part begins: a form refused before it leaves nothing to clean */
    const attempt: { begun?: Promise<void>; writing?: Promise<WrittenBlob> } = {}
    const store = (source: Readable) => {
      // recorded while the bytes travel: one commit fewer on the upload's critical path
      attempt.begun = metadata.beginBlob(key, now(), gatewayId)
      attempt.begun.catch(() => {}) // awaited below; failures surface there
      attempt.writing = blobs.write(source, { key, maxBytes: settings.maxUploadBytes })
      return attempt.writing
    }
    let upload: ReceivedUpload
    try {
      upload = await receiveUpload(req.raw, { maxBytes: settings.maxUploadBytes, ...settings }, store)
    } catch (err) {
      metrics.uploads.inc({ result: 'rejected' })
      if (attempt.begun !== undefined && attempt.writing !== undefined) cleanUp(key, attempt.begun, attempt.writing)
      if (err instanceof MayflyError && err.code === CLIENT_GONE) {
        // nobody is left to answer; one line says what happened
        req.log.warn({ key }, 'the client went away mid-upload; what it sent is removed')
      }
      throw err
    }
    const { written, options } = upload
    let file: FileRecord
    try {
      await attempt.begun
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
      cleanUp(key, attempt.begun!, Promise.resolve(written))
      throw err
    }
  })

  /**
   * The one cleanup of an upload that failed after its file part began
   * (issue 7, bug 5), run once its write settled:
   * - the write failed: the blob store removed what it wrote before it threw,
   *   so nothing is deleted twice; the pending record goes only when every
   *   removal was confirmed, else the sweeper's stale-pending scan does both;
   * - the write succeeded and the upload failed after it: the blob is
   *   forgotten once its last copy settled (`remaining`), so that no copy
   *   lands after the removal.
   * Either waits for the pending record, so that the record is never
   * written after its own abandonment.
   */
  function cleanUp(key: string, begun: Promise<void>, writing: Promise<WrittenBlob>): void {
    const recorded = begun.then(() => {}, () => {})
    writing
      .then(
        async (written) => {
          await written.remaining.catch(() => {})
          await recorded
          await forget(key)
        },
        async (err: unknown) => {
          const removed = await ((err as Partial<FailedWrite> | undefined)?.copiesRemoved ?? false)
          await recorded
          if (removed) await metadata.abandonBlob(key)
          else log.warn({ key }, 'a failed upload may have left a copy on a node; the sweeper removes it')
        },
      )
      .catch((err: unknown) => log.warn({ err, key }, 'cleanup of a failed upload is left to the sweeper'))
  }

  /**
   * Removes a blob nobody will reference from every node, then its pending
   * record. If a node or the metadata store cannot be reached the record
   * stays, and the sweeper removes the blob later (its stale-pending scan).
   */
  async function forget(key: string): Promise<void> {
    // a createFile whose answer was lost (a failover) may have committed: then the bytes are a file's
    const fate = (await metadata.replication.describeBlobs([key])).get(key)
    if (fate?.kind === 'live') {
      log.warn({ key }, 'a failed upload was recorded after all (its answer was lost); its bytes stay')
      return
    }
    const nodeIds = (await deps.nodes.all()).map((n) => n.id)
    const removed = await blobs.remove(key, nodeIds)
    if (removed.length === nodeIds.length) await metadata.abandonBlob(key)
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
