// Downloads and derived images (DESIGN §3). A download of the original counts
// one against the link's limit, claimed atomically in the metadata store
// before a byte is sent; HEAD, info, thumbnails and the share page count nothing.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Expired, NotFound } from '../../core/errors.ts'
import { fileStatus, type FileRecord, type VariantName } from '../../core/file.ts'
import { isId } from '../../core/ids.ts'
import { contentDisposition, isInlineSafe, servedMime } from '../../core/mime.ts'
import { parseRange } from '../../core/range.ts'
import type { BlobRecord } from '../../core/file.ts'
import type { GatewayDeps } from './deps.ts'
import { passwordFromHeader, type PasswordCheck } from './link-password.ts'
import type { RateLimits } from './rate-limits.ts'
import type { DownloadTally } from './download-tally.ts'
import type { FileEntry, FileLookup } from './file-lookup.ts'
import type { GatewayMetrics } from './metrics.ts'

type IdParams = { Params: { id: string } }

export function registerDownloadRoutes(
  app: FastifyInstance,
  deps: GatewayDeps,
  parts: { files: FileLookup; metrics: GatewayMetrics; tally: DownloadTally; limits: RateLimits; checkPassword: PasswordCheck },
): void {
  const { files, metrics, tally, limits, checkPassword } = parts
  const { metadata, blobs } = deps
  const now = deps.now ?? (() => new Date())

  app.get<IdParams>('/api/download/:id', async (req, reply) => {
    return download(req, reply, passwordFromHeader(req))
  })

  // the share page's form posts here (with the password, if any); answered as
  // an attachment so that a browser saves it instead of showing it (issue 7 bug 11)
  app.post<IdParams & { Body: { password?: string } }>('/f/:id/download', async (req, reply) => {
    return download(req, reply, typeof req.body?.password === 'string' ? req.body.password : undefined, 'attachment')
  })

  app.head<IdParams>('/api/download/:id', async (req, reply) => {
    const { file } = await liveFile(req.params.id)
    await checkPassword(req, file, passwordFromHeader(req))
    setFileHeaders(reply, file)
    return reply.header('content-length', file.size).send()
  })

  app.get<IdParams>('/api/files/:id/thumbnail', async (req, reply) => {
    return sendVariant(req, reply, 'thumbnail')
  })

  app.get<{ Params: { id: string; name: string } }>('/api/files/:id/variants/:name', async (req, reply) => {
    const name = req.params.name
    if (name !== 'thumbnail' && name !== 'compressed') throw new NotFound(`there is no variant called ${name}`)
    return sendVariant(req, reply, name)
  })

  async function download(req: FastifyRequest<IdParams>, reply: FastifyReply, password: string | undefined, disposition?: 'attachment') {
    await limits.take(req, 'download')
    const { file, replicas } = await liveFile(req.params.id)
    await checkPassword(req, file, password)
    const limited = file.maxDownloads !== null
    // A limited link is served whole or not at all: Range must not be a way around the limit.
    const range = limited ? { kind: 'none' as const } : parseRange(req.headers.range, file.size)
    if (range.kind === 'unsatisfiable') {
      return reply.status(416).header('content-range', `bytes */${file.size}`).send({ error: 'range_not_satisfiable', message: `the file has ${file.size} bytes` })
    }
    const claimed = limited ? await claim(file.id) : null
    let body
    try {
      body = await blobs.open(blobOf(file), replicas, range.kind === 'range' ? range.range : undefined)
    } catch (err) {
      if (claimed !== null) {
        // the download failed before a byte was sent: give it back (a failed refund costs the link one download)
        await metadata.refundDownload(file.id, claimed).catch((e: unknown) => req.log.warn({ err: e, fileId: file.id }, 'download not refunded'))
        await files.invalidate(file.id)
      }
      metrics.downloads.inc({ result: 'unavailable' })
      throw err
    }
    if (!limited) tally.add(file.id)
    metrics.downloads.inc({ result: 'ok' })
    setFileHeaders(reply, file, disposition)
    if (file.maxDownloads === null) reply.header('accept-ranges', 'bytes')
    if (range.kind === 'range') {
      const { start, end } = range.range
      reply.status(206).header('content-range', `bytes ${start}-${end}/${file.size}`).header('content-length', end - start + 1)
    } else {
      reply.header('content-length', file.size)
    }
    body.on('data', (chunk: Buffer) => metrics.downloadBytes.inc(chunk.length))
    return reply.send(body)
  }

  /** Counts one download of a limited link, atomically in the metadata store (the limit's only judge); the claim's name. */
  async function claim(id: string): Promise<string> {
    const result = await metadata.claimDownload(id, now())
    // the count changed; a claim that used the link up or found it dead killed it for this gateway's cache too
    await files.invalidate(id, { died: !result.ok || fileStatus(result.file, now()) !== 'active' })
    if (!result.ok) {
      metrics.downloads.inc({ result: result.reason })
      throw result.reason === 'not_found' ? new NotFound('no such file') : deadError(result.reason)
    }
    return result.claim
  }

  async function sendVariant(req: FastifyRequest<IdParams>, reply: FastifyReply, name: VariantName) {
    const { file } = await liveFile(req.params.id)
    await checkPassword(req, file, passwordFromHeader(req))
    const variant = (await metadata.listVariants(file.id)).find((v) => v.name === name)
    if (variant === undefined || variant.state !== 'ready' || variant.blob === null) {
      throw new NotFound(`the ${name} of this file is ${variant?.state ?? 'missing'}`, 'variant_not_ready')
    }
    const body = await blobs.open(variant.blob, await metadata.listReplicas(variant.blob.key))
    const mime = variant.mime ?? 'application/octet-stream'
    return reply
      .header('content-type', mime)
      .header('content-length', variant.blob.size)
      .header('etag', `"${variant.blob.sha256}"`)
      .header('cache-control', 'private, max-age=300')
      .header('x-content-type-options', 'nosniff')
      .send(body)
  }

  /** The file if its link is alive: 404 for unknown or malformed ids, 410 once it died. */
  async function liveFile(id: string): Promise<FileEntry> {
    if (!isId(id)) throw new NotFound('no such file')
    const entry = await files.get(id)
    if (entry === null) throw new NotFound('no such file')
    const status = fileStatus(entry.file, now())
    if (status !== 'active') throw deadError(status)
    return entry
  }
}

function deadError(status: 'expired' | 'download_limit_reached' | 'deleted'): Expired {
  const messages = {
    expired: 'this link has expired',
    download_limit_reached: 'this link has reached its download limit',
    deleted: 'this link was deleted',
  }
  return new Expired(messages[status], status)
}

function blobOf(file: FileRecord): BlobRecord {
  return { key: file.blobKey, size: file.size, sha256: file.sha256 }
}

function setFileHeaders(reply: FastifyReply, file: FileRecord, disposition?: 'attachment'): void {
  const inline = disposition === undefined && isInlineSafe(file.mime)
  reply
    .header('content-type', servedMime(file.mime))
    .header('content-disposition', contentDisposition(inline ? 'inline' : 'attachment', file.name))
    .header('etag', `"${file.sha256}"`)
    .header('x-content-type-options', 'nosniff')
    // even if a browser renders it, it runs nothing and reaches nothing of ours
    .header('content-security-policy', "default-src 'none'; img-src 'self'; media-src 'self'; sandbox")
    .header('cache-control', 'private, no-store')
}

