// buildGateway(deps): the public HTTP API and web UI (DESIGN §3). It never
// listens; main.ts does, and tests use inject() or listen on port 0.
import type { AddressInfo } from 'node:net'
import { parse as parseQuery } from 'node:querystring'
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify'
import { installErrorHandling } from '../../http/errors.ts'
import { registerClusterRoutes } from './cluster-routes.ts'
import type { GatewayDeps } from './deps.ts'
import { registerDownloadRoutes } from './download-routes.ts'
import { createDownloadTally } from './download-tally.ts'
import { createFileLookup } from './file-lookup.ts'
import { registerFileRoutes } from './file-routes.ts'
import { registerInternalRoutes } from './internal-routes.ts'
import { createPasswordCheck } from './link-password.ts'
import { createGatewayMetrics } from './metrics.ts'
import { createRateLimits } from './rate-limits.ts'
import { registerOperatorRoutes } from './operator-routes.ts'
import { registerOrphanRoutes } from './orphan-routes.ts'
import { errorPage, registerPages } from './pages.ts'
import { createGatewayPresence } from './presence.ts'
import { createClusterReads } from './replication-overview.ts'
import { guardStatusRoutes } from './status-access.ts'
import { registerUploadRoutes } from './upload-routes.ts'

export function buildGateway(deps: GatewayDeps) {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    // HEAD must not run the GET handler: a GET of a download counts one
    exposeHeadRoutes: false,
    // a socket that sends nothing for this long is cut (stalled clients)
    connectionTimeout: deps.settings.clientTimeoutMs,
    requestTimeout: 0,
    bodyLimit: 64 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
    // X-Forwarded-Host, -Proto and -For are believed only from these (they make share_url and the client's
    // address): from anyone, a request could point the links it gets back at another site (issue 7)
    trustProxy: deps.settings.trustedProxies.length > 0 ? [...deps.settings.trustedProxies] : false,
    routerOptions: { maxParamLength: 200 },
  })
  // browsers get the errors as pages, API clients as JSON
  installErrorHandling(app, { html: errorPage })
  // before any route: it puts itself in front of the status routes as they are registered
  guardStatusRoutes(app, deps.settings)
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, parseQuery(body as string))
  })
  const reads = createClusterReads(deps.metadata, deps.now)
  const metrics = createGatewayMetrics(deps, reads.replication)
  app.addHook('onResponse', async (req, reply) => {
    metrics.requestSeconds.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    )
    if (reply.statusCode >= 500) req.log.warn({ url: req.url, status: reply.statusCode }, 'request failed')
  })
  // beats once listening (tests that only inject() never appear in the registry); says goodbye on close
  const presence = createGatewayPresence(deps.metadata.gateways, deps.log)
  app.addHook('onListen', () => presence.start(() => deps.settings.advertiseUrl ?? listeningUrl(app.server.address())))
  app.addHook('onClose', () => presence.leave())
  const files = createFileLookup(deps.metadata, deps.cache, deps.settings.cacheTtlMs)
  const tally = createDownloadTally(deps.metadata, deps.log)
  app.addHook('onClose', () => tally.close())
  const limits = createRateLimits(deps.rateLimiter, deps.settings.rateLimits, deps.settings.clusterSecret, deps.log, (action) =>
    metrics.rateLimited.inc({ action }),
  )
  const checkPassword = createPasswordCheck(limits)
  registerUploadRoutes(app, deps, { metrics, files, limits, gatewayId: presence.id })
  registerDownloadRoutes(app, deps, { files, metrics, tally, limits, checkPassword })
  registerFileRoutes(app, deps, files, checkPassword)
  registerClusterRoutes(app, deps, reads, presence.id)
  registerInternalRoutes(app, deps, presence.peers)
  registerOperatorRoutes(app, deps)
  registerOrphanRoutes(app, deps)
  registerPages(app, deps, files)
  return app
}

function listeningUrl(address: string | AddressInfo | null): string {
  if (address === null || typeof address === 'string') return String(address)
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `http://${host}:${address.port}`
}
