// The control plane's side for storage nodes (DESIGN §1): the door they
// announce themselves through (heartbeats: heard at once, recorded in the
// metadata store behind the answer, heartbeat-recorder.ts), and the lookup a node makes before
// a node-to-node copy, so that it fetches only from a registered node that is
// not lost (issue 7, bug 13). Both need the cluster secret.
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { Invalid, NotFound } from '../../core/errors.ts'
import type { GatewayDeps } from './deps.ts'
import { createHeartbeatRecorder } from './heartbeat-recorder.ts'
import { requireClusterSecret } from './operator-routes.ts'

/** a node id as heartbeats may carry it */
const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/

const announcementSchema = z.object({
  id: z.string().regex(NODE_ID),
  url: z.url(),
  zone: z.string().min(1).max(64),
  version: z.string().max(64),
  capacityBytes: z.number().nonnegative(),
  freeBytes: z.number().nonnegative(),
  usedBytes: z.number().nonnegative(),
  blobCount: z.number().int().nonnegative(),
  // absent from nodes of an older version
  quarantined: z.number().int().nonnegative().default(0),
})

/**
 * `gateways`: the urls of the gateways up, answered to every heartbeat, so
 * that a node announcing through a load balancer beats each of them too.
 */
export function registerInternalRoutes(app: FastifyInstance, deps: GatewayDeps, gateways: () => string[]): void {
  const { metadata, settings } = deps
  const recorder = createHeartbeatRecorder(metadata, deps.log, deps.now ?? (() => new Date()))
  app.addHook('onClose', () => recorder.close())

  app.post('/internal/nodes/heartbeat', async (req, reply) => {
    requireClusterSecret(req, settings.clusterSecret)
    const parsed = announcementSchema.safeParse(req.body)
    if (!parsed.success) throw new Invalid(`bad heartbeat: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
    deps.nodes.heard(parsed.data.id, parsed.data.url)
    recorder.record(parsed.data)
    return reply.status(200).send({ gateways: gateways() })
  })

  /**
   * A registered node's url, and whether it is lost (declared lost by the
   * replication manager and silent since); 404 `unknown_node` for any other id.
   */
  app.get('/internal/nodes/:id', async (req) => {
    requireClusterSecret(req, settings.clusterSecret)
    const { id } = req.params as { id: string }
    const node = NODE_ID.test(id) ? (await metadata.listNodes()).find((n) => n.id === id) : undefined
    if (node === undefined) throw new NotFound(`no storage node ${id} is registered`, 'unknown_node')
    const lost = node.lostAt !== null && node.lastHeartbeat.getTime() <= node.lostAt.getTime()
    return { id: node.id, url: node.url, lost }
  })
}
