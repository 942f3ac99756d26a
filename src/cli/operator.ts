// Commands for operators: drain a node, rebalance. They ask a gateway (with
// the cluster secret) and then follow the replication manager's progress.
import { Presets, SingleBar } from 'cli-progress'
import { request } from 'undici'
import { failure, type ClientOptions } from './client.ts'
import { authorization, keptBackMessage, maySend, refusedSecretMessage, requireClusterSecret, type FoundSecret } from './cluster-secret.ts'

export interface OperatorOptions extends ClientOptions {
  /** where the cluster secret is when MAYFLY_CLUSTER_SECRET is not set */
  secretFile?: string
  wait: boolean
}

interface NodeJson {
  id: string
  zone: string
  state: string
  draining: boolean
  replicas: number
}

interface ClusterJson {
  storage_nodes: NodeJson[]
  replication: {
    blobs_below_factor: number | null
    manager: { active: boolean; rebalance?: { requested: boolean; moves: number } }
  }
}

const POLL_MS = 500

async function ask(options: OperatorOptions, method: 'POST' | 'DELETE', path: string): Promise<FoundSecret> {
  const secret = await requireClusterSecret(options.secretFile)
  if (!maySend(secret, options.url)) throw new Error(keptBackMessage(secret, options.url))
  const res = await request(`${options.url}${path}`, { method, headers: authorization(secret) })
  await refuseOn401(res, secret)
  if (res.statusCode >= 300) await failure(res)
  await res.body.dump()
  return secret
}

/** The cluster overview, with the secret: without MAYFLY_PUBLIC_STATUS the gateway shows it to no one else. */
async function cluster(options: OperatorOptions, secret: FoundSecret): Promise<ClusterJson> {
  const res = await request(`${options.url}/api/cluster`, { headers: authorization(secret) })
  await refuseOn401(res, secret)
  if (res.statusCode !== 200) await failure(res)
  return (await res.body.json()) as ClusterJson
}

async function refuseOn401(res: { statusCode: number; body: { dump(): Promise<void> } }, secret: FoundSecret): Promise<void> {
  if (res.statusCode !== 401) return
  await res.body.dump()
  throw new Error(refusedSecretMessage(secret))
}

/** Polls until `done` says so, showing `progress` on a bar that counts down from the first value seen. */
async function follow(
  options: OperatorOptions,
  secret: FoundSecret,
  label: string,
  look: (c: ClusterJson) => { left: number; done: boolean },
): Promise<void> {
  const bar = new SingleBar({ format: `${label} [{bar}] {left} left`, hideCursor: true, stream: process.stderr }, Presets.shades_classic)
  let total = -1
  let warned = false
  try {
    for (;;) {
      const state = await cluster(options, secret)
      const { left, done } = look(state)
      if (total < 0) bar.start((total = Math.max(1, left)), 0, { left })
      bar.setTotal(Math.max(total, left))
      bar.update(Math.max(total, left) - left, { left })
      if (done) return
      if (!state.replication.manager.active && !warned) {
        process.stderr.write('\nno replication manager is running: start `mayfly replicator` (waiting)\n')
        warned = true
      }
      await new Promise((r) => setTimeout(r, POLL_MS))
    }
  } finally {
    bar.stop()
  }
}

export async function drainCommand(id: string, options: OperatorOptions): Promise<void> {
  const secret = await ask(options, 'POST', `/api/nodes/${encodeURIComponent(id)}/drain`)
  process.stderr.write(`node ${id} is draining: it takes no new blobs, and its copies move to other nodes\n`)
  if (!options.wait) return
  await follow(options, secret, 'draining', (c) => {
    const node = c.storage_nodes.find((n) => n.id === id)
    const left = node?.replicas ?? 0
    // an unknown backlog (no manager published lately) is not an empty one
    return { left, done: left === 0 && c.replication.blobs_below_factor === 0 }
  })
  process.stderr.write(`node ${id} holds nothing now and can be retired\n`)
}

export async function undrainCommand(id: string, options: OperatorOptions): Promise<void> {
  await ask(options, 'DELETE', `/api/nodes/${encodeURIComponent(id)}/drain`)
  process.stderr.write(`node ${id} takes new blobs again\n`)
}

export async function rebalanceCommand(options: OperatorOptions): Promise<void> {
  const secret = await ask(options, 'POST', '/api/cluster/rebalance')
  process.stderr.write('rebalance requested\n')
  if (!options.wait) return
  // the manager takes the request within a second or so; until then it still says not requested
  let seen = false
  await follow(options, secret, 'rebalancing', (c) => {
    const requested = c.replication.manager.rebalance?.requested ?? true
    seen ||= requested
    return { left: requested ? 1 : 0, done: seen && !requested }
  })
  const moves = (await cluster(options, secret)).replication.manager.rebalance?.moves ?? 0
  process.stderr.write(`rebalance finished (${moves} moves by this manager so far)\n`)
}
