// buildGateway(deps): the public HTTP API and web UI (DESIGN §3). It never
// listens; main.ts does, and tests use inject() or listen on port 0.
import { parse as parseQuery } from 'node:querystring'
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify'
import { installErrorHandling } from '../../http/errors.ts'
import { registerClusterRoutes } from './cluster-routes.ts'
import type { GatewayDeps } from './deps.ts'
import { registerDownloadRoutes } from './download-routes.ts'
import { createDownloadTally } from './download-tally.ts'
import { createFileLookup } from './file-lookup.ts'
import { registerFileRoutes } from './file-routes.ts'
import { createGatewayMetrics } from './metrics.ts'
import { registerOperatorRoutes } from './operator-routes.ts'
import { registerPages } from './pages.ts'
import { createReplicationOverview } from './replication-overview.ts'
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
    trustProxy: true,
    routerOptions: { maxParamLength: 200 },
  })
  installErrorHandling(app)
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, parseQuery(body as string))
  })
  const replication = createReplicationOverview(deps.metadata, deps.nodes, deps.settings.replicationFactor, deps.settings.placement)
  const metrics = createGatewayMetrics(deps, replication)
  app.addHook('onResponse', async (req, reply) => {
    metrics.requestSeconds.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    )
    if (reply.statusCode >= 500) req.log.warn({ url: req.url, status: reply.statusCode }, 'request failed')
  })
  const files = createFileLookup(deps.metadata, deps.cache, deps.settings.cacheTtlMs)
  const tally = createDownloadTally(deps.metadata, deps.log)
  app.addHook('onClose', () => tally.close())
  registerUploadRoutes(app, deps, metrics, files)
  registerDownloadRoutes(app, deps, files, metrics, tally)
  registerFileRoutes(app, deps, files)
  registerClusterRoutes(app, deps, replication)
  registerOperatorRoutes(app, deps)
  registerPages(app, deps, files)
  return app
}
