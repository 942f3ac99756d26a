// What operators decide about copies of blobs the metadata does not know
// (`mayfly orphans`; docs/replication.md, "Unknown blobs"): the replication
// manager holds them instead of deleting them after a restore, or when more
// are due at once than it deletes on its own. These routes list them and
// record the decision; the manager deletes what was released at the node's
// next reconciliation (within seconds). Cluster secret only, as drain and
// rebalance.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Invalid } from '../../core/errors.ts'
import { isId } from '../../core/ids.ts'
import { CONTROL_DOCUMENTS, type OrphanHold } from '../../core/replication.ts'
import type { MetadataStore, OrphanState } from '../../ports.ts'
import type { GatewayDeps } from './deps.ts'
import { requireClusterSecret } from './operator-routes.ts'
import { orphansJson, readOrphans } from './replication-overview.ts'

const MAX_PAGE = 1000
const MAX_KEYS = 10_000

/** The blob keys a decision names, or null for every copy; Invalid on anything else. */
function keysOf(req: FastifyRequest): string[] | null {
  const body = (req.body ?? {}) as { keys?: unknown }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Invalid('the body is a JSON object: { "keys": [...] } or {}')
  if (body.keys === undefined) return null
  if (!Array.isArray(body.keys) || body.keys.length === 0 || body.keys.length > MAX_KEYS) {
    throw new Invalid(`keys is a list of 1 to ${MAX_KEYS} blob keys; leave it out to decide about every copy`)
  }
  for (const key of body.keys) {
    if (typeof key !== 'string' || !isId(key)) throw new Invalid(`not a blob key: ${JSON.stringify(key)}`, 'invalid_key')
  }
  return body.keys as string[]
}

/** Lifts the hold: new unknown copies are deleted after the grace again (or held again if many are due at once). */
async function liftHold(metadata: MetadataStore): Promise<void> {
  const doc = await metadata.replication.readControl(CONTROL_DOCUMENTS.orphanHold)
  if (doc !== null) await metadata.replication.clearControl(CONTROL_DOCUMENTS.orphanHold, doc.version)
}

export function registerOrphanRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const { metadata, settings } = deps
  const now = deps.now ?? (() => new Date())

  app.get('/api/cluster/orphans', async (req) => {
    requireClusterSecret(req, settings.clusterSecret)
    const query = req.query as { after_node?: string; after_key?: string; limit?: string }
    const limit = query.limit === undefined ? 100 : Number(query.limit)
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new Invalid(`limit is 1 to ${MAX_PAGE}`)
    if ((query.after_node === undefined) !== (query.after_key === undefined)) throw new Invalid('after_node and after_key go together')
    const after = query.after_node === undefined ? null : { nodeId: query.after_node, key: query.after_key! }
    const [overview, copies] = await Promise.all([readOrphans(metadata), metadata.replication.orphans.list(after, limit)])
    const last = copies.at(-1)
    return {
      ...orphansJson(overview),
      copies: copies.map((c) => ({ node_id: c.nodeId, key: c.key, size: c.size, state: c.state, held_at: c.heldAt.toISOString() })),
      next: copies.length === limit && last !== undefined ? { after_node: last.nodeId, after_key: last.key } : null,
    }
  })

  /** `from` the states a decision about every copy takes; one naming keys takes kept copies too (kept is for good otherwise) */
  const decide = (from: OrphanState[], to: OrphanState, what: string) => async (req: FastifyRequest) => {
    requireClusterSecret(req, settings.clusterSecret)
    const keys = keysOf(req)
    const changed = await metadata.replication.orphans.decide(keys === null ? from : [...new Set([...from, 'kept' as const])].filter((s) => s !== to), to, keys)
    // a decision about every copy ends the hold; one about some keeps it for the others
    if (keys === null) await liftHold(metadata)
    req.log.warn({ copies: changed, keys: keys?.length ?? 'all' }, `an operator ${what} copies of blobs the metadata does not know`)
    return { [to]: changed, hold_lifted: keys === null }
  }
  app.post('/api/cluster/orphans/delete', decide(['held'], 'released', 'released (to be deleted)'))
  app.post('/api/cluster/orphans/keep', decide(['held'], 'kept', 'kept'))

  app.post('/api/cluster/orphans/hold', async (req) => {
    requireClusterSecret(req, settings.clusterSecret)
    const doc = await metadata.replication.readControl(CONTROL_DOCUMENTS.orphanHold)
    if (doc !== null) return { hold: doc.value as OrphanHold }
    const hold: OrphanHold = { reason: 'operator', since: now().toISOString(), detail: 'held by an operator (mayfly orphans hold)' }
    await metadata.replication.writeControl(CONTROL_DOCUMENTS.orphanHold, hold)
    req.log.warn('an operator holds every copy of a blob the metadata does not know: none is deleted until released')
    return { hold }
  })
}
