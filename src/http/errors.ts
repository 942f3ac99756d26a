// The one error handler every Mayfly HTTP app uses: our errors become their
// status and `{ error, message }`; Fastify's own 4xx keep their status; any
// other error is a 500 with a generic body and its stack in the log.
import type { IncomingMessage } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { MayflyError, RateLimited } from '../core/errors.ts'

export interface ErrorBody {
  error: string
  message: string
}

export interface ErrorHandlingOptions {
  /**
   * Renders an error as an HTML page, for browsers (requests that rank
   * text/html above JSON): the same status and message as the JSON. Absent:
   * JSON for everyone. Only the gateway, which serves pages, passes one.
   */
  html?: (status: number, body: ErrorBody, req: FastifyRequest) => string
}

export function installErrorHandling(app: FastifyInstance, options: ErrorHandlingOptions = {}): void {
  const answer = (req: FastifyRequest, reply: FastifyReply, status: number, body: ErrorBody) => {
    if (options.html === undefined) return reply.status(status).send(body)
    // the same url answers HTML or JSON by Accept: caches must keep them apart
    reply.status(status).header('vary', 'Accept')
    if (prefersHtml(req.headers.accept)) return reply.type('text/html; charset=utf-8').send(options.html(status, body, req))
    return reply.type('application/json; charset=utf-8').send(body)
  }
  app.setErrorHandler((err: FastifyError | Error, req, reply) => {
    if (reply.sent || reply.raw.headersSent) {
      // a stream failed after the headers went out: all we can do is cut it
      req.log.warn({ err }, 'response failed after headers were sent')
      reply.raw.destroy()
      return
    }
    // A refused request whose body was not read (an upload too large, a bad
    // form): the rest is read and dropped so that the client, still sending,
    // gets the answer instead of a reset connection; but only for a while.
    if (hasUnreadBody(req.raw)) lingerThenClose(req.raw)
    if (err instanceof MayflyError) {
      if (err.status >= 500) req.log.warn({ err }, err.message)
      if (err instanceof RateLimited) reply.header('retry-after', String(err.retryAfterSeconds))
      return answer(req, reply, err.status, { error: err.code, message: err.message })
    }
    const status = (err as FastifyError).statusCode
    if (status !== undefined && status >= 400 && status < 500) {
      const code = (err as FastifyError).validation ? 'invalid_request' : codeForStatus(status)
      return answer(req, reply, status, { error: code, message: err.message })
    }
    // a caller that cut its own request (a client gone, a gateway abandoning an upload's copies) is no fault here
    if (req.raw.destroyed && !req.raw.complete) req.log.debug({ err }, 'the caller went away mid-request')
    else req.log.error({ err }, 'unhandled error')
    return answer(req, reply, 500, { error: 'internal', message: 'something went wrong on our side' })
  })
  app.setNotFoundHandler((req, reply) => {
    return answer(req, reply, 404, { error: 'not_found', message: `no route for ${req.method} ${req.url.split('?')[0]}` })
  })
}

/**
 * True when the client ranks text/html above application/json, as a browser
 * navigating does (text/html,…,*\/*;q=0.8). curl's *\/*, fetch's default and
 * API clients asking for JSON get JSON; a tie goes to JSON.
 */
export function prefersHtml(accept: string | undefined): boolean {
  if (accept === undefined) return false
  let html = 0
  let json = 0
  for (const part of accept.toLowerCase().split(',')) {
    const [type, ...params] = part.split(';').map((p) => p.trim())
    const q = params.find((p) => p.startsWith('q='))
    const quality = q === undefined ? 1 : Number(q.slice(2))
    if (!Number.isFinite(quality)) continue
    if (type === 'text/html') html = Math.max(html, quality)
    if (type === 'application/json') json = Math.max(json, quality)
  }
  return html > json
}

function codeForStatus(status: number): string {
  switch (status) {
    case 400: return 'invalid_request'
    case 401: return 'unauthorized'
    case 404: return 'not_found'
    case 408: return 'timeout'
    case 413: return 'too_large'
    case 415: return 'unsupported_media_type'
    default: return 'invalid_request'
  }
}

/** A request body that was announced and not read to its end (a GET without a body is never "complete" before it is read, so `complete` alone is not enough). */
function hasUnreadBody(raw: IncomingMessage): boolean {
  const announced = raw.headers['transfer-encoding'] !== undefined || Number(raw.headers['content-length'] ?? 0) > 0
  // readableEnded too: a body read to its end by a handler (or by inject(), which never sets `complete`)
  return announced && !raw.complete && !raw.readableEnded
}

/** Like nginx's lingering close: drain the body for at most LINGER_MS, then cut the connection. */
const LINGER_MS = 5000

function lingerThenClose(raw: IncomingMessage): void {
  // destroying the request destroys its socket (and works on inject()'s fake one too)
  const timer = setTimeout(() => raw.destroy(), LINGER_MS)
  timer.unref()
  raw.once('end', () => clearTimeout(timer))
  raw.once('close', () => clearTimeout(timer))
  raw.resume()
}
