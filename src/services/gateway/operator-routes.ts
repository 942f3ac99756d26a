// What operators ask of the cluster (`mayfly node drain`, `mayfly rebalance`).
// The replication manager does the work; these routes only record the wish.
// Until accounts exist (the auth issue) an operator proves itself with the
// cluster secret, as storage nodes do.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Conflict, NotFound, Unauthorized } from '../../core/errors.ts'
import { CONTROL_DOCUMENTS } from '../../core/replication.ts'
import type { GatewayDeps } from './deps.ts'
import { hasClusterSecret } from './status-access.ts'

/** Throws Unauthorized unless the request carries `Authorization: Bearer <cluster secret>`. */
export function requireClusterSecret(req: FastifyRequest, secret: string): void {
  if (!hasClusterSecret(req, secret)) {
    throw new Unauthorized('this needs the cluster secret (Authorization: Bearer …)')
  }
}

export function registerOperatorRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const { metadata, settings } = deps
  const now = deps.now ?? (() => new Date())

  const setDraining = (draining: boolean) => async (req: FastifyRequest) => {
    requireClusterSecret(req, settings.clusterSecret)
    const { id } = req.params as { id: string }
    if (draining) {
      // its copies can only move if enough other nodes are there to hold them
      const others = (await deps.nodes.all()).filter((n) => n.id !== id && n.state === 'up' && !n.draining)
      if (others.length < settings.replicationFactor) {
        throw new Conflict(
          `draining ${id} would leave ${others.length} nodes up for a replication factor of ${settings.replicationFactor}: add a node first`,
          'not_enough_nodes',
        )
      }
    }
    if (!(await metadata.replication.setNodeDraining(id, draining))) throw new NotFound(`no storage node ${id}`)
    req.log.info({ node: id, draining }, draining ? 'node draining: its copies move to other nodes' : 'node no longer draining')
    return { id, draining }
  }
  app.post('/api/nodes/:id/drain', setDraining(true))
  app.delete('/api/nodes/:id/drain', setDraining(false))

  app.post('/api/cluster/rebalance', async (req, reply) => {
    requireClusterSecret(req, settings.clusterSecret)
    await metadata.replication.writeControl(CONTROL_DOCUMENTS.rebalance, { requestedAt: now().toISOString() })
    req.log.info('rebalance requested')
    return reply.status(202).send({ rebalance: 'requested' })
  })
}
