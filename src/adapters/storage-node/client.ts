// The client of the storage node API (DESIGN §4), shared by the gateway's
// replicated blob store, the replication manager and workers. One undici
// Agent pools keep-alive connections per node; every call is bounded by
// timeoutMs of silence (headers and body), so a frozen node (SIGSTOP) fails
// within that bound instead of hanging. Errors are ours (core/errors.ts):
//   404 NotFound, 422 ChecksumMismatch, 401 Unauthorized, 400/416 Invalid,
//   409 fenced: LeaseLost, network errors, timeouts, 5xx and other 409s:
//   Unavailable('node_unavailable') naming the node. A copy's target that
//   blames its source: 502 PeerFailed, 409 Conflict('unknown_source').
// A call aborted through its signal rejects with the signal's AbortError.
import { PassThrough } from 'node:stream'
import { Agent, type Dispatcher } from 'undici'
import type { BlobRecord } from '../../core/file.ts'
import { ChecksumMismatch, Conflict, Invalid, LeaseLost, MayflyError, NotFound, PeerFailed, Unauthorized, Unavailable } from '../../core/errors.ts'
import { FENCE_HEADER, fenceHeader } from '../../core/fence.ts'
import type { NodeAnnouncement } from '../../core/node.ts'
import type { BlobClient, BlobPage, Fence } from '../../ports.ts'

export interface BlobClientOptions {
  /** the cluster secret */
  secret: string
  /** a call whose node sends or answers nothing for this long fails (MAYFLY_NODE_TIMEOUT_MS) */
  timeoutMs: number
  /** connections kept per node; default 128 */
  connectionsPerNode?: number
}


function base(nodeUrl: string): string {
  return nodeUrl.replace(/\/+$/, '')
}

function blobUrl(nodeUrl: string, key: string): string {
  return `${base(nodeUrl)}/blobs/${encodeURIComponent(key)}`
}

function unavailable(nodeUrl: string, err: unknown): Unavailable {
  const message = err instanceof Error ? err.message : String(err)
  return new Unavailable(`storage node ${nodeUrl} unavailable: ${message}`, 'node_unavailable', { cause: err })
}

/** Our error for a failed call: an AbortError stays itself, undici and socket errors become Unavailable. */
function callError(nodeUrl: string, err: unknown, signal?: AbortSignal): Error {
  if (signal?.aborted === true) return err instanceof Error ? err : new Error(String(err))
  if (err instanceof MayflyError) return err
  return unavailable(nodeUrl, err)
}

/** Reads the node's `{error, message}` and maps the status to our errors. */
async function statusError(nodeUrl: string, res: Dispatcher.ResponseData): Promise<Error> {
  let text = ''
  try {
    text = await res.body.text()
  } catch {
    // the body failed: the status says enough
  }
  return errorOf(nodeUrl, res.statusCode, text)
}

/** Our error for a status other than the one expected, with the node's `{error, message}` body when it sent one. */
function errorOf(nodeUrl: string, statusCode: number, body: string): Error {
  let code = ''
  let message = `answered ${statusCode}`
  try {
    const parsed = JSON.parse(body) as { error?: unknown; message?: unknown }
    if (typeof parsed.error === 'string') code = parsed.error
    if (typeof parsed.message === 'string') message = parsed.message
  } catch {
    // not JSON: the status says enough
  }
  const where = `storage node ${nodeUrl}: ${message}`
  switch (statusCode) {
    case 404: return new NotFound(where)
    case 422: return new ChecksumMismatch(where)
    case 401: return new Unauthorized(where)
    case 409: return code === 'fenced' ? new LeaseLost(where) : new Unavailable(`storage node ${nodeUrl}: ${message}`, 'node_unavailable')
    case 400:
    case 416: return new Invalid(where, code || 'invalid_request')
    default: return new Unavailable(`storage node ${nodeUrl} unavailable: ${message} (${statusCode})`, 'node_unavailable')
  }
}

/** The X-Mayfly-Fence header of a replication manager's request, or none. */
function fenced(fence: Fence | undefined): Record<string, string> {
  return fence === undefined ? {} : { [FENCE_HEADER]: fenceHeader(fence) }
}

function header(res: Dispatcher.ResponseData, name: string): string | undefined {
  const v = res.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * Our error for a copy the target did not make: the source's fault when the
 * target says so (so that the caller does not blame a healthy target, issue 7),
 * else as for any call to the target.
 */
async function copyError(targetUrl: string, sourceNodeId: string, res: Dispatcher.ResponseData): Promise<Error> {
  let text = ''
  try {
    text = await res.body.text()
  } catch {
    // the body failed: the status says enough
  }
  let parsed: { error?: unknown; message?: unknown } = {}
  try {
    parsed = JSON.parse(text) as typeof parsed
  } catch {
    // not JSON
  }
  const message = `storage node ${targetUrl} could not copy from node ${sourceNodeId}: ${typeof parsed.message === 'string' ? parsed.message : `answered ${res.statusCode}`}`
  if (res.statusCode === 502 && parsed.error === 'peer_unavailable') return new PeerFailed(message)
  if (res.statusCode === 409 && parsed.error === 'unknown_source') return new Conflict(message, 'unknown_source')
  return errorOf(targetUrl, res.statusCode, text)
}

export function createBlobClient(options: BlobClientOptions): BlobClient {
  const agent = new Agent({
    connections: options.connectionsPerNode ?? 128,
    pipelining: 1, // one request at a time per connection: no head-of-line blocking behind a big blob
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    connect: { timeout: options.timeoutMs },
  })
  const auth = `Bearer ${options.secret}`

  async function call(nodeUrl: string, url: string, opts: Omit<Dispatcher.RequestOptions, 'origin' | 'path'>): Promise<Dispatcher.ResponseData> {
    try {
      const { origin, pathname, search } = new URL(url)
      const headers = { authorization: auth, ...(opts.headers as Record<string, string> | undefined) }
      return await agent.request({ ...opts, origin, path: pathname + search, headers })
    } catch (err) {
      throw callError(nodeUrl, err, opts.signal as AbortSignal | undefined)
    }
  }

  /** Throws the mapped error (consuming the body) unless the status is one of `ok`. */
  async function expect(nodeUrl: string, res: Dispatcher.ResponseData, ...ok: number[]): Promise<void> {
    if (!ok.includes(res.statusCode)) throw await statusError(nodeUrl, res)
  }

  async function json<T>(nodeUrl: string, res: Dispatcher.ResponseData): Promise<T> {
    try {
      return (await res.body.json()) as T
    } catch (err) {
      throw unavailable(nodeUrl, err)
    }
  }

  return {
    async put(nodeUrl, key, body, opts = {}) {
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream' }
      if (opts.sha256 !== undefined) headers['x-content-sha256'] = opts.sha256
      if (opts.size !== undefined) headers['content-length'] = String(opts.size)
      const res = await call(nodeUrl, blobUrl(nodeUrl, key), { method: 'PUT', body, headers, signal: opts.signal })
      await expect(nodeUrl, res, 201)
      return json<BlobRecord>(nodeUrl, res)
    },

    async get(nodeUrl, key, opts = {}) {
      const headers: Record<string, string> = {}
      if (opts.range !== undefined) headers.range = `bytes=${opts.range.start}-${opts.range.end}`
      const res = await call(nodeUrl, blobUrl(nodeUrl, key), { method: 'GET', headers, signal: opts.signal })
      await expect(nodeUrl, res, 200, 206)
      const size = Number(header(res, 'content-length'))
      const sha256 = header(res, 'x-content-sha256') ?? ''
      const partial = res.statusCode === 206
      const totalSize = partial ? Number(/\/(\d+)$/.exec(header(res, 'content-range') ?? '')?.[1]) : size
      if (!Number.isSafeInteger(size) || !Number.isSafeInteger(totalSize) || !/^[0-9a-f]{64}$/.test(sha256)) {
        res.body.destroy()
        throw unavailable(nodeUrl, new Error('answer without a valid Content-Length, Content-Range or X-Content-SHA256'))
      }
      // our errors on the stream too; a consumer that gives up releases the socket
      const out = new PassThrough()
      res.body.on('error', (err) => out.destroy(callError(nodeUrl, err, opts.signal)))
      out.on('close', () => {
        if (!res.body.destroyed) res.body.destroy()
      })
      res.body.pipe(out)
      return { body: out, size, totalSize, sha256, partial }
    },

    getWhole(nodeUrl, key, size, opts = {}) {
      const { signal } = opts
      const abortReason = (s: AbortSignal): Error => (s.reason instanceof Error ? s.reason : new DOMException('the call was aborted', 'AbortError'))
      return new Promise<Buffer>((resolve, reject) => {
        let settled = false
        let request: Dispatcher.DispatchController | null = null
        // cancelled (another replica answered first): the socket is cut, the call rejects with the signal's AbortError
        const onAbort = () => {
          const reason = abortReason(signal!)
          settle(reason)
          request?.abort(reason)
        }
        const settle = (err: Error | null, data?: Buffer) => {
          if (settled) return
          settled = true
          signal?.removeEventListener('abort', onAbort)
          if (err === null) resolve(data!)
          else reject(err)
        }
        if (signal?.aborted === true) return onAbort()
        signal?.addEventListener('abort', onAbort, { once: true })
        let status = 0
        let data: Buffer | null = null
        let filled = 0
        const errorBody: Buffer[] = []
        let errorBytes = 0
        let target: { origin: string; path: string }
        try {
          const { origin, pathname } = new URL(blobUrl(nodeUrl, key))
          target = { origin, path: pathname }
        } catch (err) {
          return settle(callError(nodeUrl, err))
        }
        // undici's dispatch API: the response's bytes go straight into one Buffer, no stream objects
        agent.dispatch(
          { ...target, method: 'GET', headers: { authorization: auth } },
          {
            onRequestStart(controller) {
              request = controller
              if (signal?.aborted === true) controller.abort(abortReason(signal))
            },
            onResponseStart(controller, statusCode, headers) {
              status = statusCode
              if (statusCode !== 200) return
              const length = Number(headers['content-length'])
              if (length !== size) {
                const err = Number.isSafeInteger(length)
                  ? new NotFound(`storage node ${nodeUrl} holds a blob of ${length} bytes, not ${size}`)
                  : unavailable(nodeUrl, new Error('answer without a valid Content-Length'))
                settle(err)
                controller.abort(err)
                return
              }
              data = Buffer.allocUnsafe(size)
            },
            onResponseData(controller, chunk) {
              if (data === null) {
                // an error's JSON body; more than a few KiB is not one of ours
                if (errorBytes < 16 * 1024) errorBody.push(chunk)
                errorBytes += chunk.length
                return
              }
              if (filled + chunk.length > size) {
                const err = unavailable(nodeUrl, new Error(`sent more than the ${size} bytes it announced`))
                settle(err)
                controller.abort(err)
                return
              }
              chunk.copy(data, filled)
              filled += chunk.length
            },
            onResponseEnd() {
              if (status !== 200) return settle(errorOf(nodeUrl, status, Buffer.concat(errorBody).toString('utf8')))
              if (filled !== size) return settle(unavailable(nodeUrl, new Error(`ended after ${filled} of ${size} bytes`)))
              settle(null, data!)
            },
            onResponseError(_controller, err) {
              settle(callError(nodeUrl, err, signal))
            },
          },
        )
      })
    },

    async head(nodeUrl, key) {
      const res = await call(nodeUrl, blobUrl(nodeUrl, key), { method: 'HEAD' })
      await res.body.dump()
      // a HEAD answer has no body to explain itself: the status alone decides
      if (res.statusCode === 404) throw new NotFound(`storage node ${nodeUrl}: no such blob`)
      if (res.statusCode === 401) throw new Unauthorized(`storage node ${nodeUrl}: cluster secret refused`)
      if (res.statusCode !== 200) throw unavailable(nodeUrl, new Error(`answered ${res.statusCode}`))
      return { key, size: Number(header(res, 'content-length')), sha256: header(res, 'x-content-sha256') ?? '' }
    },

    async delete(nodeUrl, key, opts = {}) {
      const res = await call(nodeUrl, blobUrl(nodeUrl, key), { method: 'DELETE', headers: fenced(opts.fence) })
      await expect(nodeUrl, res, 204)
      await res.body.dump()
    },

    async list(nodeUrl, opts = {}) {
      const q = new URLSearchParams()
      if (opts.after !== undefined) q.set('after', opts.after)
      if (opts.limit !== undefined) q.set('limit', String(opts.limit))
      const res = await call(nodeUrl, `${base(nodeUrl)}/blobs?${q}`, { method: 'GET' })
      await expect(nodeUrl, res, 200)
      return json<BlobPage>(nodeUrl, res)
    },

    async copy(targetUrl, key, sourceNodeId, opts = {}) {
      const res = await call(targetUrl, `${blobUrl(targetUrl, key)}/copy`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...fenced(opts.fence) },
        // by id: the target looks the source up with its control plane (issue 7)
        body: JSON.stringify({ source: sourceNodeId }),
        // the target answers after streaming the whole blob; stalls between the nodes are bounded there
        headersTimeout: opts.timeoutMs ?? options.timeoutMs * 60,
        signal: opts.signal,
      })
      if (res.statusCode !== 201) throw await copyError(targetUrl, sourceNodeId, res)
      return json<BlobRecord>(targetUrl, res)
    },

    async health(nodeUrl) {
      const res = await call(nodeUrl, `${base(nodeUrl)}/health`, { method: 'GET' })
      await expect(nodeUrl, res, 200)
      return json<NodeAnnouncement>(nodeUrl, res)
    },

    close: () => agent.close(),
  }
}
