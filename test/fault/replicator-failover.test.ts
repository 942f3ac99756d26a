// The replication manager is one active instance among standbys (DESIGN §1):
// `mayfly replicator` processes elect a leader through a lease in
// PostgreSQL. Killing the leader mid-repair: a standby takes over and
// finishes. Pausing a leader (SIGSTOP) past its lease: another takes over,
// and the old one, resumed, steps down instead of acting (fencing).
import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { CONTROL_DOCUMENTS, type ReplicatorStatus } from '../../src/core/replication.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { waitFor } from '../helpers/http.ts'
import { spawnMayfly, waitForOutput, type MayflyProcess } from '../helpers/mayfly-process.ts'
import { assertFilesRead, assertPlacement, FAST_MEMBERSHIP, nodeHoldingMost, uploadRandomFiles, waitForFactor, waitForLost } from '../helpers/replication.ts'

describe('replication manager failover', { timeout: 180_000 }, () => {
  let cluster: Cluster
  const managers: MayflyProcess[] = []
  after(async () => {
    for (const m of managers) if (m.alive()) await m.kill('SIGKILL')
    await cluster?.close()
  })

  function startManager(): MayflyProcess {
    // slow repair (1 MiB/s) so that the leader can be killed in the middle of it
    const m = spawnMayfly(['replicator'], { ...cluster.env, MAYFLY_LOG_LEVEL: 'info', MAYFLY_REPAIR_MIB_PER_SECOND: '1' })
    managers.push(m)
    return m
  }

  async function status(): Promise<ReplicatorStatus | null> {
    const doc = await cluster.infra.metadata.replication.readControl(CONTROL_DOCUMENTS.status)
    return doc === null ? null : (doc.value as ReplicatorStatus)
  }

  /** The manager process whose pid the status names as the leader. */
  async function leader(notToken = 0): Promise<{ process: MayflyProcess; status: ReplicatorStatus }> {
    return waitFor('a leader', async () => {
      const s = await status()
      if (s === null || s.token <= notToken) return undefined
      const pid = Number(s.holder.split(':')[1])
      const process = managers.find((m) => m.pid === pid && m.alive())
      return process === undefined ? undefined : { process, status: s }
    }, 20_000)
  }

  test('killing the active manager mid-repair: a standby takes over and finishes it', async () => {
    cluster = await startCluster({ mode: 'real', zones: ['a', 'b', 'c', 'c'], replicator: false, env: FAST_MEMBERSHIP })
    startManager()
    startManager()
    const first = await leader()
    const standby = managers.find((m) => m !== first.process)!
    await waitForOutput(standby, /standing by/)

    const files = await uploadRandomFiles(cluster, 20, 512 * 1024)
    await waitForFactor(cluster)

    // the node holding the most copies (a zone a or b one holds every blob): the most repair work
    const lost = await nodeHoldingMost(cluster)
    await lost.kill('SIGKILL')
    await waitForLost(cluster, lost.id)
    await waitFor('the repair under way', async () => ((await status())?.copies ?? 0) > 0 ? true : undefined, 20_000)
    const below = (await cluster.infra.metadata.replication.backlog(3, 0)).blobsBelowFactor
    assert.ok(below > 0, 'the leader is killed with repair work left')
    await first.process.kill('SIGKILL')

    const second = await leader(first.status.token)
    assert.equal(second.process, standby)
    await waitForFactor(cluster, 60_000)
    assert.ok(((await status())?.copies ?? 0) > 0, 'the new leader made copies')
    await assertPlacement(cluster, files.keys(), [lost.id])
    await assertFilesRead(cluster, files)
  })

  test('a leader paused past its lease is replaced, and steps down when it resumes', async () => {
    const paused = (await leader()).process
    const fresh = startManager()
    await waitForOutput(fresh, /standing by/)
    const pausedToken = (await status())!.token
    await paused.kill('SIGSTOP')
    try {
      const next = await leader(pausedToken)
      assert.equal(next.process, fresh)
    } finally {
      await paused.kill('SIGCONT')
    }
    await waitForOutput(paused, /stepping down as replication manager/, 15_000)
    // it neither took the lease back nor published over the new leader
    const after = await status()
    assert.ok(after !== null && after.token > pausedToken)
    assert.equal(Number(after.holder.split(':')[1]), fresh.pid)
    await waitForOutput(paused, /another replication manager is active; standing by/, 15_000)
  })
})
