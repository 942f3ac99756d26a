// The replication manager (DESIGN §1): one active instance, elected by a
// lease in the metadata store; standbys retry the lease and take over within
// about a lease period when the leader dies. While it leads it runs two lanes
// under that lease:
//   membership + reconciliation: node states, lost nodes, inventory checks
//   repair (+ rebalance on request): blobs back to their factor, drains, moves
// Every change it makes is fenced by the lease's token (see ReplicationStore),
// so a leader that was paused past its lease cannot act on stale beliefs.
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { LeaseLost } from '../../core/errors.ts'
import { createPauses } from '../../core/pauses.ts'
import { CONTROL_DOCUMENTS, type ReplicatorCounters, type ReplicatorStatus } from '../../core/replication.ts'
import type { Logger } from '../../log.ts'
import type { BlobClient, Lease, NodeDirectory, ReplicationStore } from '../../ports.ts'
import type { LeaderContext, ReplicatorSettings } from './context.ts'
import { createBacklogCount } from './backlog-count.ts'
import { createMembership } from './membership.ts'
import { createRebalancer } from './rebalance.ts'
import { createReconciler } from './reconcile.ts'
import { createRepairer } from './repair.ts'
import { createThrottle } from './throttle.ts'

export interface ReplicationManagerOptions extends ReplicatorSettings {
  store: ReplicationStore
  nodes: NodeDirectory
  client: BlobClient
  log: Logger
  /** lease name; the namespace keeps test runs apart */
  leaseName: string
  leaseMs: number
  /** repair bandwidth cap, bytes per second */
  bandwidth: number
  auditIntervalMs: number
  /** pause between two idle rounds of membership and reconciliation */
  idleMs?: number
  /**
   * pause of the repair walk after a round that changed nothing (each round
   * scans the live blobs); a lost node or a reconciliation that found missing
   * copies starts it at once
   */
  rescanMs?: number
}

export interface ReplicationManager {
  /** true while this instance holds the lease */
  leading(): boolean
  /** Steps down (releasing the lease) and stops. */
  stop(): Promise<void>
}

const STATUS_EVERY_MS = 1000
const RATE_WINDOW_MS = 10_000

export function startReplicationManager(options: ReplicationManagerOptions): ReplicationManager {
  const { store, log } = options
  const idleMs = options.idleMs ?? 500
  const rescanMs = options.rescanMs ?? 5000
  const holder = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  let stopped = false
  let lease: Lease | null = null
  /** ends the current reign (stop() must not wait for copies paced by the throttle) */
  let endReign: (why: string) => void = () => undefined
  /** pauses that wake() ends early: every one (stop, stepping down), or one lane's */
  const { sleep, wake } = createPauses()

  async function lead(held: Lease): Promise<void> {
    const since = new Date()
    let lost = false
    const throttle = createThrottle(options.bandwidth)
    const counters: ReplicatorCounters = { copies: 0, copiedBytes: 0, failedCopies: 0, removals: 0, lostNodes: 0, reconciledNodes: 0, moves: 0 }
    const samples: { at: number; bytes: number }[] = []
    // copies in flight may wait minutes for their target's answer: ending the reign aborts them (issue 7, bug 8)
    const reign = new AbortController()
    const ctx: LeaderContext = {
      store,
      client: options.client,
      nodes: options.nodes,
      log,
      settings: options,
      fence: { name: held.name, token: held.token },
      throttle,
      signal: reign.signal,
      inflight: new Set(),
      counters,
      copied(bytes) {
        counters.copiedBytes += bytes
        samples.push({ at: Date.now(), bytes })
      },
      leading: () => !lost && !stopped,
      repairSoon: () => wake('repair'),
    }
    /** Ends this reign: nothing new starts, waits and copies in flight end at once. */
    const end = (say: () => void) => {
      if (lost) return
      lost = true
      throttle.stop()
      reign.abort(new Error('the replication manager is stepping down or stopping'))
      wake()
      say()
    }
    const stepDown = (why: string, err?: unknown) =>
      end(() => log.warn({ err, token: held.token }, `stepping down as replication manager: ${why}`))
    endReign = (why) => end(() => log.info({ token: held.token }, `replication manager ${why}`))

    // renew at a third of the lease; a renewal that fails or errors past the lease ends the reign
    const renewer = setInterval(() => {
      held.renew().then(
        (ok) => {
          if (!ok) stepDown('the lease was lost')
        },
        (err: unknown) => stepDown('the lease could not be renewed', err),
      )
    }, options.leaseMs / 3)

    const membership = createMembership(ctx, { auditIntervalMs: options.auditIntervalMs })
    const reconciler = createReconciler(ctx)
    const repairer = createRepairer(ctx)
    const rebalancer = createRebalancer(ctx)
    const backlog = createBacklogCount(store, options.nodes, options, log)
    /** nodes to reconcile, in order; membership adds, the reconcile lane takes */
    const reconciling: string[] = []
    let rebalance = { requested: false }

    const guard = async (lane: string, fn: () => Promise<boolean>, idle = idleMs) => {
      while (ctx.leading()) {
        let busy = false
        try {
          busy = await fn()
        } catch (err) {
          if (err instanceof LeaseLost) return stepDown('a fenced change was refused', err)
          log.warn({ err, lane }, 'replication manager step failed; retrying')
        }
        if (!busy) await sleep(idle, lane)
      }
    }

    const membershipLane = guard('membership', async () => {
      for (const node of await membership.tick(await options.nodes.all())) {
        if (!reconciling.includes(node.id)) reconciling.push(node.id)
      }
      return false
    })

    const reconcileLane = guard('reconcile', async () => {
      const nodeId = reconciling[0]
      if (nodeId === undefined) return false
      try {
        const node = await options.nodes.byId(nodeId)
        if (node?.state === 'up') {
          const { missing, adopted } = await reconciler.reconcile(node)
          if (missing + adopted > 0) ctx.repairSoon()
          // a reconciliation cut short (stepping down) is not one
          if (!ctx.leading()) return false
          if (node.lostAt !== null) await store.markNodeReconciled(node.id, ctx.fence)
          counters.reconciledNodes++
        }
        membership.reconciled(nodeId)
      } catch (err) {
        membership.failed(nodeId)
        throw err
      } finally {
        // a failed reconciliation stays due: membership queues it again at the back
        reconciling.shift()
      }
      return true
    })

    const repairLane = guard('repair', async () => {
      const { changes, wrapped } = await repairer.step()
      if (changes > 0 || !wrapped) return true
      const request = await store.readControl(CONTROL_DOCUMENTS.rebalance)
      rebalance = { requested: request !== null }
      if (request === null) return false
      const { moves, balanced } = await rebalancer.step()
      if (balanced) {
        await store.clearControl(CONTROL_DOCUMENTS.rebalance, request.version)
        log.info({ moves: counters.moves }, 'rebalance finished: no move would make the nodes more even')
      }
      return moves > 0
    }, rescanMs)

    const statusLane = guard('status', async () => {
      // copies an operator released (`mayfly orphans delete`) go at their node's next reconciliation: now
      for (const c of await store.orphans.counts()) if (c.state === 'released' && c.copies > 0) membership.soon(c.nodeId)
      const cutoff = Date.now() - RATE_WINDOW_MS
      while (samples.length > 0 && samples[0]!.at < cutoff) samples.shift()
      const windowMs = Math.min(RATE_WINDOW_MS, Date.now() - since.getTime())
      const status: ReplicatorStatus = {
        holder,
        token: held.token,
        leaderSince: since.toISOString(),
        updatedAt: new Date().toISOString(),
        copyRate: Math.round(samples.reduce((sum, s) => sum + s.bytes, 0) / Math.max(1, windowMs / 1000)),
        ...counters,
        reconciling: [...reconciling],
        rebalance: { ...rebalance, moves: counters.moves },
        backlog: backlog.latest(),
      }
      await store.writeControl(CONTROL_DOCUMENTS.status, status, ctx.fence)
      await sleep(STATUS_EVERY_MS)
      return true
    })

    await Promise.all([membershipLane, reconcileLane, repairLane, statusLane])
    await backlog.settled()
    clearInterval(renewer)
    throttle.stop()
  }

  async function run(): Promise<void> {
    let standbyLogged = false
    while (!stopped) {
      try {
        lease = await store.acquireLease(options.leaseName, holder, options.leaseMs)
      } catch (err) {
        log.warn({ err }, 'could not ask for the replication manager lease; retrying')
        lease = null
      }
      if (lease === null) {
        if (!standbyLogged) log.info('another replication manager is active; standing by')
        standbyLogged = true
        await sleep(Math.min(1000, options.leaseMs / 3))
        continue
      }
      standbyLogged = false
      log.info({ token: lease.token, holder }, 'this is the active replication manager')
      await lead(lease)
      await lease.release().catch((err: unknown) => log.warn({ err }, 'releasing the lease failed; it lapses on its own'))
      lease = null
    }
  }

  const running = run().catch((err: unknown) => log.error({ err }, 'replication manager stopped'))
  log.info({ holder, leaseMs: options.leaseMs }, 'replication manager started')
  return {
    leading: () => lease !== null,
    async stop() {
      stopped = true
      endReign('stopping')
      wake()
      await running
    },
  }
}
