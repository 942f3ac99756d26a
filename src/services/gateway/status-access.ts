// Who may see the cluster (DESIGN §3): the routes below answer the cluster
// secret as `Authorization: Bearer <secret>` always, anyone else only while
// MAYFLY_PUBLIC_STATUS is true (`mayfly up`'s default, not `mayfly gateway`'s).
// Admins join them with accounts (the auth issue). /health and /ready stay
// public: load balancers and orchestrators probe them without credentials.
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { Unauthorized } from '../../core/errors.ts'
import { safeEqual } from '../../core/secrets.ts'
import type { GatewaySettings } from './deps.ts'

/** The routes that show the cluster, wherever they are registered (pages.ts has /admin). */
export const STATUS_ROUTES: ReadonlySet<string> = new Set(['/admin', '/api/cluster', '/api/nodes', '/metrics'])

/** Whether the request carries `Authorization: Bearer <cluster secret>`. */
export function hasClusterSecret(req: FastifyRequest, secret: string): boolean {
  return safeEqual(req.headers.authorization ?? '', `Bearer ${secret}`)
}

/**
 * Puts the access check in front of every status route registered after this
 * call (Fastify's onRoute hook), so that no route of the list can be added
 * without it, whichever file registers it.
 */
export function guardStatusRoutes(app: FastifyInstance, settings: Pick<GatewaySettings, 'publicStatus' | 'clusterSecret'>): void {
  const check: onRequestAsyncHookHandler = async (req) => {
    if (settings.publicStatus || hasClusterSecret(req, settings.clusterSecret)) return
    throw new Unauthorized('the cluster status needs the cluster secret (Authorization: Bearer …), or MAYFLY_PUBLIC_STATUS=true on the gateway')
  }
  app.addHook('onRoute', (route) => {
    if (!STATUS_ROUTES.has(route.url)) return
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [check, ...own]
  })
}
