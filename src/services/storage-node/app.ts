// The storage node's HTTP API (DESIGN §4). buildStorageNode never listens;
// runStorageNode (run.ts) does.
import { createHash, timingSafeEqual } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { z } from 'zod'
import { Conflict, Invalid, NotFound, Unauthorized } from '../../core/errors.ts'
import { FENCE_HEADER, parseFence } from '../../core/fence.ts'
import { ID_PATTERN } from '../../core/ids.ts'
import type { NodeAnnouncement } from '../../core/node.ts'
import { installErrorHandling } from '../../http/errors.ts'
import type { Logger } from '../../log.ts'
import type { BlobFiles, OpenedBlob } from './blob-files.ts'
import { parseRange } from '../../core/range.ts'
import type { Fences } from './fences.ts'
import { copyFromPeer } from './peer-copy.ts'
import type { SourceNodes } from './source-nodes.ts'

/** Who this node is; `url` may be set after listen (port 0). */
export interface NodeIdentity {
  id: string
  zone: string
  url: string
  version: string
}

export interface StorageNodeDeps {
  log: Logger
  files: BlobFiles
  /** the highest replication manager lease tokens seen (deletes and copies from an older leader are refused) */
  fences: Fences
  identity: NodeIdentity
  /** the cluster secret every caller but GET /health must present */
  secret: string
  /** an uploading client that sends nothing for this long is cut off */
  clientTimeoutMs: number
  /** a peer that answers nothing for this long fails a copy */
  peerTimeoutMs: number
  /** for calls to peers (copy) */
  dispatcher: Dispatcher
  /** the nodes a copy may come from: registered with the control plane, not lost */
  sources: SourceNodes
}

const SHA256_PATTERN = /^[0-9a-f]{64}$/

const listQuery = z.object({
  after: z.string().regex(/^[A-Za-z0-9_-]{0,22}$/, 'a blob key or a prefix of one').default(''),
  limit: z.coerce.number().int().min(1).max(10000).default(1000),
})

/** a copy names its source by node id (as the control plane registers them), never by url */
const copyBody = z.object({ source: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/) })

/** What the node says of itself on GET /health and in every heartbeat. */
export async function describeNode(files: BlobFiles, identity: NodeIdentity): Promise<NodeAnnouncement> {
  const { capacityBytes, freeBytes } = await files.disk()
  const { blobCount, usedBytes, quarantined } = files.stats()
  return { ...identity, capacityBytes, freeBytes, usedBytes, blobCount, quarantined }
}

export function buildStorageNode(deps: StorageNodeDeps): FastifyInstance {
  const { files, log } = deps
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // one log line per blob call would drown the log; failures are logged by the error handler
    logController: new LogController({ disableRequestLogging: true }),
    exposeHeadRoutes: false,
    // for JSON bodies only: blob uploads bypass the parsers (no limit at the node)
    bodyLimit: 64 * 1024,
    return503OnClosing: true,
  })
  const secretDigest = createHash('sha256').update(deps.secret).digest()

  app.addHook('onRequest', async (req) => {
    if (req.routeOptions.url === '/health') return
    const header = req.headers.authorization ?? ''
    const given = header.startsWith('Bearer ') ? header.slice(7) : ''
    // compare digests: constant time, whatever the lengths
    if (!timingSafeEqual(createHash('sha256').update(given).digest(), secretDigest)) {
      throw new Unauthorized('a valid cluster secret is required (Authorization: Bearer …)')
    }
  })

  installErrorHandling(app)

  app.get('/health', async () => describeNode(files, deps.identity))

  app.get('/blobs', async (req) => {
    const parsed = listQuery.safeParse(req.query)
    if (!parsed.success) throw new Invalid(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '))
    const { blobs, more } = await files.list(parsed.data.after, parsed.data.limit)
    return { blobs, next: more ? (blobs.at(-1)?.key ?? null) : null }
  })

  app.get('/blobs/:key', async (req, reply) => {
    const blob = await openOrThrow(files, keyOf(req))
    const range = parseRange(req.headers.range, blob.size)
    if (range.kind === 'unsatisfiable') {
      await blob.close()
      reply.header('content-range', `bytes */${blob.size}`)
      return reply.status(416).send({ error: 'range_not_satisfiable', message: `the blob has ${blob.size} bytes` })
    }
    const { start, end } = range.kind === 'range' ? range.range : { start: 0, end: blob.size - 1 }
    // every byte is verified before it is sent; damage before the first one is a 404 (DamagedBlob),
    // later damage cuts the response short after the last good byte (blob-reader.ts)
    const body = await blob.read({ start, end })
    setBlobHeaders(reply, blob)
    if (range.kind === 'range') {
      reply.status(206)
      reply.header('content-range', `bytes ${start}-${end}/${blob.size}`)
    }
    reply.header('content-length', end - start + 1)
    cutOffStalledReader(req, reply, deps.clientTimeoutMs)
    return reply.send(body)
  })

  app.head('/blobs/:key', async (req, reply) => {
    const blob = await openOrThrow(files, keyOf(req))
    await blob.close()
    setBlobHeaders(reply, blob)
    reply.header('content-length', blob.size)
    return reply.send()
  })

  /** A request from a replication manager whose lease was superseded is refused (409 fenced). */
  async function admit(req: FastifyRequest): Promise<void> {
    const fence = parseFence(req.headers[FENCE_HEADER])
    if (fence === undefined) throw new Invalid('X-Mayfly-Fence must be <lease name>:<token>')
    if (fence !== null && !(await deps.fences.admit(fence.name, fence.token))) {
      throw new Conflict(`lease ${fence.name} #${fence.token} was superseded`, 'fenced')
    }
  }

  app.delete('/blobs/:key', async (req, reply) => {
    const key = keyOf(req)
    await admit(req)
    await files.remove(key)
    return reply.status(204).send()
  })

  app.post('/blobs/:key/copy', async (req, reply) => {
    const key = keyOf(req)
    await admit(req)
    const parsed = copyBody.safeParse(req.body)
    if (!parsed.success) throw new Invalid('body must be JSON { "source": "<node id>" }')
    const id = parsed.data.source
    if (id === deps.identity.id) throw new Invalid('a node cannot copy a blob from itself')
    const source = { id, url: await deps.sources.urlOf(id) }
    // a caller that hangs up (a replication manager stopping) ends the copy: nothing is kept
    const hungUp = new AbortController()
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) hungUp.abort(new Error('the caller went away'))
    })
    const record = await copyFromPeer({
      key,
      source,
      secret: deps.secret,
      dispatcher: deps.dispatcher,
      timeoutMs: deps.peerTimeoutMs,
      files,
      signal: hungUp.signal,
    })
    req.log.info({ key, source: id }, 'blob copied from peer')
    return reply.status(201).send(record)
  })

  // Blob uploads bypass body parsing: the handler streams req.raw to disk.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null))
    scope.put('/blobs/:key', async (req, reply) => {
      const key = keyOf(req)
      const expected = req.headers['x-content-sha256']
      if (expected !== undefined && (typeof expected !== 'string' || !SHA256_PATTERN.test(expected))) {
        throw new Invalid('X-Content-SHA256 must be 64 lowercase hex digits')
      }
      const record = await files.write(key, req.raw, { sha256: expected, idleTimeoutMs: deps.clientTimeoutMs })
      return reply.status(201).send(record)
    })
  })

  return app
}

/** The :key parameter, checked before it goes near the filesystem. */
function keyOf(req: FastifyRequest): string {
  const { key } = req.params as { key?: string }
  if (key === undefined || !ID_PATTERN.test(key)) throw new NotFound('no such blob')
  return key
}

async function openOrThrow(files: BlobFiles, key: string): Promise<OpenedBlob> {
  const blob = await files.open(key)
  if (blob === null) throw new NotFound('no such blob')
  return blob
}

function setBlobHeaders(reply: FastifyReply, blob: OpenedBlob): void {
  reply.header('content-type', 'application/octet-stream')
  reply.header('x-content-sha256', blob.sha256)
  reply.header('etag', `"${blob.sha256}"`)
  reply.header('accept-ranges', 'bytes')
}

/**
 * A reader that takes no bytes for `ms` is cut off (DESIGN §5.10), so a
 * frozen caller does not hold a file and a socket forever. Only for this
 * response: the keep-alive socket may carry a long copy call next.
 */
function cutOffStalledReader(req: FastifyRequest, reply: FastifyReply, ms: number): void {
  const socket = req.raw.socket
  const onTimeout = () => {
    req.log.warn({ url: req.url, timeoutMs: ms }, 'a reader took no bytes for too long; connection cut')
    socket.destroy()
  }
  socket.setTimeout(ms)
  socket.once('timeout', onTimeout)
  reply.raw.once('close', () => {
    socket.setTimeout(0)
    socket.off('timeout', onTimeout)
  })
}
