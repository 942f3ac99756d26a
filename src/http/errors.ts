// The one error handler every Mayfly HTTP app uses: our errors become their
// status and `{ error, message }`; Fastify's own 4xx keep their status; any
// other error is a 500 with a generic body and its stack in the log.
import type { IncomingMessage } from 'node:http'
import type { FastifyError, FastifyInstance } from 'fastify'
import { MayflyError } from '../core/errors.ts'

export function installErrorHandling(app: FastifyInstance): void {
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
      return reply.status(err.status).send({ error: err.code, message: err.message })
    }
    const status = (err as FastifyError).statusCode
    if (status !== undefined && status >= 400 && status < 500) {
      const code = (err as FastifyError).validation ? 'invalid_request' : codeForStatus(status)
      return reply.status(status).send({ error: code, message: err.message })
    }
    req.log.error({ err }, 'unhandled error')
    return reply.status(500).send({ error: 'internal', message: 'something went wrong on our side' })
  })
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send({ error: 'not_found', message: `no route for ${req.method} ${req.url.split('?')[0]}` })
  })
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
  return announced && !raw.complete
}

/** Like nginx's lingering close: drain the body for at most LINGER_MS, then cut the connection. */
const LINGER_MS = 5000

function lingerThenClose(raw: IncomingMessage): void {
  const timer = setTimeout(() => raw.socket?.destroy(), LINGER_MS)
  timer.unref()
  raw.once('end', () => clearTimeout(timer))
  raw.once('close', () => clearTimeout(timer))
  raw.resume()
}
