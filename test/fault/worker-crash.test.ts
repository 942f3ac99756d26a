// DESIGN §5 invariant 8 (jobs are never lost and never block), on RabbitMQ,
// PostgreSQL and Redis, with the worker as its own process (`mayfly worker`):
// a worker SIGKILLed in the middle of a variant job, a job that fails every
// time, and a malformed job. Every variant ends `ready` exactly once, the
// failing job reaches the dead-letter queue after MAYFLY_JOB_MAX_ATTEMPTS,
// the malformed one at once, and the worker survives both.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import amqp, { type Channel, type ChannelModel } from 'amqplib'
import pg from 'pg'
import { topicQueues } from '../../src/adapters/rabbitmq/topology.ts'
import { DEFAULT_MAX_RETRY_DELAY_MS } from '../../src/core/jobs.ts'
import { derivedKey } from '../../src/core/ids.ts'
import { VARIANT_TOPIC } from '../../src/wiring.ts'
import { AMQP_URL, startCluster, type Cluster } from '../helpers/cluster.ts'
import { photoPaths, upload, waitFor } from '../helpers/http.ts'
import { spawnMayfly, waitForOutput, type MayflyProcess } from '../helpers/mayfly-process.ts'
import { diskState } from '../e2e/api-suite.ts'

const MAX_ATTEMPTS = 3

describe('worker crashes and poison jobs (RabbitMQ)', { timeout: 240_000 }, () => {
  let cluster: Cluster
  let amqpConn: ChannelModel
  let ch: Channel
  let db: pg.Client
  let workerDir: string
  const workers: MayflyProcess[] = []
  let queues: ReturnType<typeof topicQueues>

  before(async () => {
    cluster = await startCluster({
      mode: 'real',
      worker: false,
      env: { MAYFLY_JOB_MAX_ATTEMPTS: String(MAX_ATTEMPTS), MAYFLY_JOB_RETRY_DELAY_MS: '100' },
    })
    queues = topicQueues(cluster.config.MAYFLY_NAMESPACE, VARIANT_TOPIC, {
      maxAttempts: MAX_ATTEMPTS,
      retryDelayMs: 100,
      maxRetryDelayMs: DEFAULT_MAX_RETRY_DELAY_MS,
    })
    amqpConn = await amqp.connect(AMQP_URL)
    ch = await amqpConn.createChannel()
    db = new pg.Client({ connectionString: cluster.config.MAYFLY_DATABASE_URL })
    await db.connect()
    workerDir = await mkdtemp(join(tmpdir(), 'mayfly-worker-'))
  })

  after(async () => {
    for (const w of workers) await w.kill('SIGKILL')
    await db?.end().catch(() => {})
    await amqpConn?.close().catch(() => {})
    await cluster?.close()
    if (workerDir !== undefined) await rm(workerDir, { recursive: true, force: true })
  })

  /** `mayfly worker` on the cluster's database, Redis, RabbitMQ, namespace and secret; one job at a time. */
  async function startWorkerProcess(): Promise<MayflyProcess> {
    const c = cluster.config
    const worker = spawnMayfly(['worker'], {
      MAYFLY_DATA_DIR: workerDir,
      MAYFLY_DATABASE_URL: c.MAYFLY_DATABASE_URL!,
      MAYFLY_REDIS_URL: c.MAYFLY_REDIS_URL!,
      MAYFLY_AMQP_URL: c.MAYFLY_AMQP_URL!.join(','),
      MAYFLY_NAMESPACE: c.MAYFLY_NAMESPACE,
      MAYFLY_CLUSTER_SECRET: cluster.secret,
      MAYFLY_JOB_MAX_ATTEMPTS: String(MAX_ATTEMPTS),
      MAYFLY_JOB_RETRY_DELAY_MS: '100',
      MAYFLY_WORKER_CONCURRENCY: '1',
      MAYFLY_NODE_TIMEOUT_MS: String(c.MAYFLY_NODE_TIMEOUT_MS),
      MAYFLY_SWEEP_INTERVAL_SECONDS: '0.5',
      MAYFLY_LOG_LEVEL: 'info',
    })
    workers.push(worker)
    await waitForOutput(worker, /"msg":"worker started"/)
    return worker
  }

  const ready = async () => (await ch.checkQueue(queues.main)).messageCount
  const depth = async () => (await cluster.infra.queue.depths([VARIANT_TOPIC]))[0]!
  const pendingFiles = async (ids: string[]) => {
    const out: string[] = []
    for (const id of ids) if ((await cluster.infra.metadata.listVariants(id)).some((v) => v.state === 'pending')) out.push(id)
    return out
  }

  /** Takes every message of the dead-letter queue and puts it back: their jobs and attempt headers. */
  async function deadLetters(): Promise<{ job: Record<string, unknown>; attempt: unknown }[]> {
    const out: { job: Record<string, unknown>; attempt: unknown }[] = []
    const taken = []
    for (;;) {
      const msg = await ch.get(queues.dead, { noAck: false })
      if (msg === false) break
      taken.push(msg)
      out.push({ job: JSON.parse(msg.content.toString()) as Record<string, unknown>, attempt: msg.properties.headers?.['x-mayfly-attempt'] })
    }
    for (const msg of taken) ch.nack(msg, false, true)
    return out
  }

  test('a worker killed mid-job: the job comes back, every variant is made once; a failing job is dead-lettered', async () => {
    const photos = await photoPaths()
    // the largest photo first: its job runs for a while, so the kill lands inside it
    const good = ['volna', 'autumn', 'path', 'colorfulcups'].map((n) => photos.find((p) => p.includes(n))!)
    const ids: string[] = []
    for (const photo of good) {
      const { status, body } = await upload(cluster.url, photo)
      assert.equal(status, 201, JSON.stringify(body))
      ids.push(String(body.id))
    }
    // A job that fails every time with an ordinary (retryable) error: an image
    // whose only replica is on a node nobody can reach (reading it throws
    // Unavailable). Its real copies are removed from every node.
    const poison = await upload(cluster.url, photos.find((p) => p.includes('fallenleaf'))!)
    assert.equal(poison.status, 201)
    const poisonId = String(poison.body.id)
    const poisonKey = (await cluster.infra.metadata.getFile(poisonId))!.blobKey
    await waitFor('three copies of the poison original', async () => ((await cluster.infra.metadata.listReplicas(poisonKey)).length === 3 ? true : undefined))
    for (const node of cluster.nodes) {
      await cluster.infra.client.delete(node.url, poisonKey)
      await cluster.infra.metadata.removeReplica(poisonKey, node.id)
    }
    await cluster.infra.metadata.addReplica(poisonKey, 'node-unreachable')
    await waitFor('five jobs queued', async () => ((await ready()) === 5 ? true : undefined))

    // worker A takes the first job; SIGKILL while it runs
    const a = await startWorkerProcess()
    await waitFor('worker A to take a job', async () => ((await ready()) < 5 ? true : undefined), 30_000)
    await a.kill('SIGKILL')
    assert.deepEqual(await pendingFiles(ids), ids, 'the kill landed while the first job was running (nothing finished)')
    await waitFor('the broker to take the unacked job back', async () => ((await ready()) === 5 ? true : undefined))

    // worker B does everything
    const b = await startWorkerProcess()
    await waitFor('every variant of the good files made', async () => ((await pendingFiles(ids)).length === 0 ? true : undefined), 120_000)
    await waitFor('the failing job in the dead-letter queue', async () => ((await depth()).dead === 1 ? true : undefined), 30_000)
    const d = await depth()
    assert.deepEqual({ ready: d.ready, retrying: d.retrying, dead: d.dead, consumers: d.consumers }, { ready: 0, retrying: 0, dead: 1, consumers: 1 })
    const letters = await deadLetters()
    assert.deepEqual(letters, [{ job: { fileId: poisonId }, attempt: MAX_ATTEMPTS }], 'dead-lettered after exactly MAYFLY_JOB_MAX_ATTEMPTS attempts')

    // exactly once: each variant ready under its derived key, nothing else written
    const expected = new Set<string>()
    for (const id of ids) {
      const file = (await cluster.infra.metadata.getFile(id))!
      expected.add(file.blobKey)
      const variants = await cluster.infra.metadata.listVariants(id)
      assert.deepEqual(variants.map((v) => [v.name, v.state]).sort(), [['compressed', 'ready'], ['thumbnail', 'ready']], id)
      for (const v of variants) {
        assert.equal(v.blob!.key, derivedKey(file.blobKey, v.name))
        expected.add(v.blob!.key)
        assert.ok((await cluster.infra.metadata.listReplicas(v.blob!.key)).length >= 2, `${v.name} of ${id} is on a quorum`)
      }
    }
    const { rows } = await db.query<{ key: string; state: string }>('SELECT key, state FROM blobs')
    assert.deepEqual(rows.filter((r) => r.state !== 'active'), [], 'no blob left pending (the killed job’s write was finished by its redelivery)')
    assert.deepEqual(rows.map((r) => r.key).filter((k) => k !== poisonKey).sort(), [...expected].sort(), 'one blob per original and per variant')
    for (const node of cluster.nodes) {
      const disk = await diskState(node.dataDir)
      assert.deepEqual(disk.blobs.filter((k) => !expected.has(k)), [], `${node.id} holds no other blob`)
      assert.deepEqual(disk.temp, [], `${node.id} has no temp file`)
    }
    assert.ok(b.alive())
  })

  test('a malformed job goes to the dead-letter queue at once and the worker keeps working', async () => {
    const b = workers.at(-1)!
    await cluster.infra.queue.publish(VARIANT_TOPIC, { fileId: 42 })
    await waitFor('the malformed job in the dead-letter queue', async () => ((await depth()).dead === 2 ? true : undefined), 30_000)
    const letters = await deadLetters()
    assert.deepEqual(letters.find((l) => l.job.fileId === 42)?.attempt, 1, 'no retries for a job that cannot succeed')
    assert.ok(b.alive(), `the worker survived:\n${b.output().slice(-2000)}`)

    const { body } = await upload(cluster.url, (await photoPaths()).find((p) => p.includes('bythewater'))!)
    await waitFor('the next upload to get its variants', async () => ((await pendingFiles([String(body.id)])).length === 0 ? true : undefined), 60_000)
    const d = await depth()
    assert.deepEqual({ ready: d.ready, retrying: d.retrying, dead: d.dead }, { ready: 0, retrying: 0, dead: 2 })
  })
})
