// Issue 10, RabbitMQ without a single broker: three brokers of one cluster
// (scripts/rabbitmq-ha.sh) and Mayfly's queue adapter configured from the
// topology's mayfly.env (MAYFLY_AMQP_URL with the three brokers, the
// defaults wiring.ts uses). Under a steady stream of published jobs (one
// every 20 ms, each awaited with its confirm) the broker leading the main
// queue is killed with SIGKILL: no confirmed job is lost (each delivered at
// least once; duplicates are counted and allowed, jobs are idempotent),
// publishing resumes quickly (DESIGN §5.7 says within a second; the
// longest gap between confirmed publishes after the kill is printed and held
// under 2 s; INFRA-NOTES' floor is 0.4 s), and both consumers keep
// consuming, the one that was connected to the killed broker included; then
// start-member brings the broker back into the cluster, and the same again
// with the new leader. Poison jobs on the cluster: one whose handler always
// throws is dead-lettered after maxAttempts by Mayfly's count; one whose
// consumer dies as it arrives, before Mayfly counts, by the broker's
// delivery limit. One topology for the file, stopped in after().
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { connect } from 'amqplib'
import { createRabbitQueue } from '../../src/adapters/rabbitmq/queue.ts'
import { BROKER_DELIVERY_LIMIT, topicQueues } from '../../src/adapters/rabbitmq/topology.ts'
import { loadConfig } from '../../src/config.ts'
import { DEFAULT_MAX_RETRY_DELAY_MS } from '../../src/core/jobs.ts'
import { createLogger } from '../../src/log.ts'
import type { JobQueue } from '../../src/ports.ts'
import { dieOnEveryDelivery } from '../helpers/dying-consumer.ts'
import { startRabbitHa, type BrokerNumber, type RabbitHa } from '../helpers/rabbitmq-ha.ts'
import { waitFor } from '../helpers/wait.ts'

const silent = createLogger('silent')
const TOPIC = 'stream'
const PUBLISH_EVERY_MS = 20
/** DESIGN §5.7 promises a second; this allows the machine's noise (other tests share its 2 cores) */
const MAX_PUBLISH_GAP_MS = 2000

describe('RabbitMQ: the leader broker killed under a stream of jobs', { timeout: 240_000 }, () => {
  let ha: RabbitHa
  const queues: JobQueue[] = []
  const namespace = `t-${randomUUID().slice(0, 8)}`
  const config = () => loadConfig({ ...ha.env, MAYFLY_DATA_DIR: 'memory://', MAYFLY_NAMESPACE: namespace })

  /** Mayfly's queue as wiring.ts makes it from the environment; `first` is the broker it tries first. */
  function mayflyQueue(first: BrokerNumber, options: { maxAttempts?: number; retryDelayMs?: number } = {}): JobQueue {
    const c = config()
    const urls = c.MAYFLY_AMQP_URL!
    const rotated = [...urls.slice(first - 1), ...urls.slice(0, first - 1)]
    const queue = createRabbitQueue({
      maxAttempts: options.maxAttempts ?? c.MAYFLY_JOB_MAX_ATTEMPTS,
      retryDelayMs: options.retryDelayMs ?? c.MAYFLY_JOB_RETRY_DELAY_MS,
      log: silent,
      url: rotated,
      namespace,
    })
    queues.push(queue)
    return queue
  }

  before(async () => {
    ha = await startRabbitHa()
  })
  after(async () => {
    for (const q of queues) await q.close().catch(() => undefined)
    await ha?.stop()
  })

  /** One round: the stream, the kill of the main queue's leader, the checks; the figures. */
  async function killLeaderUnderLoad(round: number): Promise<{ leader: BrokerNumber; gapMs: number; confirmed: number; duplicates: number }> {
    const main = `${namespace}.${TOPIC}`
    // the first round declares the queue through broker 1, which then leads it (client-local placement)
    const leader = round === 1 ? 1 : await ha.leaderOf(main)
    // the publisher and one consumer connected to the leader, another consumer elsewhere
    const publisher = mayflyQueue(leader)
    const other = ([1, 2, 3] as BrokerNumber[]).find((n) => n !== leader)!
    const deliveries: { seq: number; consumer: 'onLeader' | 'elsewhere'; at: number }[] = []
    const consumerOf = (name: 'onLeader' | 'elsewhere') => async (job: Record<string, unknown>) => {
      if (job.round === round) deliveries.push({ seq: Number(job.seq), consumer: name, at: Date.now() })
    }
    const consumers = [
      await mayflyQueue(leader).consume(TOPIC, consumerOf('onLeader')),
      await mayflyQueue(other).consume(TOPIC, consumerOf('elsewhere')),
    ]
    if (round === 1) assert.equal(await ha.leaderOf(main), 1, 'broker 1 leads the queue it declared')

    const confirmedAt = new Map<number, number>()
    let failed = 0
    let publishing = true
    const stream = (async () => {
      for (let seq = 0; publishing; seq++) {
        try {
          await publisher.publish(TOPIC, { round, seq })
          confirmedAt.set(seq, Date.now())
        } catch {
          failed++
        }
        await new Promise((r) => setTimeout(r, PUBLISH_EVERY_MS))
      }
    })()
    await waitFor('jobs flowing to both consumers', () => new Set(deliveries.map((d) => d.consumer)).size === 2, 10_000)
    await new Promise((r) => setTimeout(r, 1500))
    await ha.signal(leader, 'SIGKILL')
    const killedAt = Date.now()
    // the queue tier as /api/cluster shows it: the killed broker down within 3 s (DESIGN §3), the publisher moved on
    const killedPort = String(ha.portOf(leader))
    const seen = await waitFor('the killed broker shown down', async () => {
      const detail = (await publisher.status()).detail as { brokers: { url: string; state: string }[]; connected?: string }
      return detail.brokers.find((b) => new URL(b.url).port === killedPort)?.state === 'down' ? detail : undefined
    }, 3000, 100)
    assert.equal(seen.brokers.filter((b) => b.state === 'up').length, 2)
    await new Promise((r) => setTimeout(r, Math.max(0, 4000 - (Date.now() - killedAt))))
    publishing = false
    await stream

    const acks = [...confirmedAt.values()].sort((a, b) => a - b)
    let gapMs = 0
    for (let i = 1; i < acks.length; i++) if (acks[i]! > killedAt) gapMs = Math.max(gapMs, acks[i]! - acks[i - 1]!)
    const confirmedAfterKill = acks.filter((t) => t > killedAt).length
    const lost = () => {
      const delivered = new Set(deliveries.map((d) => d.seq))
      return [...confirmedAt.keys()].filter((seq) => !delivered.has(seq))
    }
    await waitFor('every confirmed job delivered', () => lost().length === 0, 30_000, 100).catch(() => undefined)
    assert.deepEqual(lost(), [], 'no confirmed job lost')
    assert.equal(failed, 0, 'no publish gave up')
    // at least a few: how many fit in 4 s depends on the machine's load; the gap is the measure
    assert.ok(confirmedAfterKill > 10, `publishing went on after the kill (${confirmedAfterKill} confirmed)`)
    assert.ok(gapMs < MAX_PUBLISH_GAP_MS, `publishing resumed ${gapMs} ms after the kill`)
    // both consumers consumed after the kill, the one that was on the killed broker through another
    for (const name of ['onLeader', 'elsewhere'] as const) {
      const later = deliveries.filter((d) => d.consumer === name && d.at > killedAt + 1000).length
      assert.ok(later > 0, `the consumer ${name} kept consuming after the kill (deliveries: ${JSON.stringify(deliveries.filter((d) => d.consumer === name).map((d) => d.at - killedAt))} ms from the kill)`)
    }
    for (const c of consumers) await c.stop()
    await publisher.close()
    const seqs = deliveries.map((d) => d.seq)
    return { leader, gapMs, confirmed: confirmedAt.size, duplicates: seqs.length - new Set(seqs).size }
  }

  // Round 2 kills the leader elected in round 1 while the broker killed then
  // is back: its queue member must have caught up, or the two left would
  // not be a majority and publishing would not resume.
  test('no confirmed job lost, publishing resumes, consumers move; the killed broker rejoins (twice)', async () => {
    for (const round of [1, 2]) {
      const { leader, gapMs, confirmed, duplicates } = await killLeaderUnderLoad(round)
      console.log(`rabbitmq failover, round ${round}: leader rabbit-${leader} killed; longest gap between confirmed publishes ${gapMs} ms; ${confirmed} confirmed, all delivered, ${duplicates} duplicates`)
      await ha.startMember(leader)
      const brokers = await ha.status()
      assert.deepEqual(brokers.map((b) => [b.number, b.alive, b.running_in_cluster]), [[1, true, true], [2, true, true], [3, true, true]], `rabbit-${leader} back in the cluster`)
    }
  })

  test('poison jobs on the cluster: a failing handler by maxAttempts, a dying consumer by the broker\'s delivery limit', async () => {
    const queue = mayflyQueue(2, { maxAttempts: 3, retryDelayMs: 50 })
    const attempts: number[] = []
    const consumer = await queue.consume('failing', async (_job, ctx) => {
      attempts.push(ctx.attempt)
      throw new Error('always fails')
    })
    await queue.publish('failing', { id: 'poison' })
    await waitFor('the failing job in the dead-letter queue', async () => (await queue.depths(['failing']))[0]!.dead === 1, 15_000)
    assert.deepEqual(attempts, [1, 2, 3])
    await consumer.stop()

    // a consumer that dies as the job arrives: Mayfly never counts it, the broker does
    await queue.publish('dying', { id: 'kills-on-arrival' })
    const q = topicQueues(namespace, 'dying', { maxAttempts: 3, retryDelayMs: 50, maxRetryDelayMs: DEFAULT_MAX_RETRY_DELAY_MS })
    const conn = await connect(ha.urls[2]!)
    try {
      assert.deepEqual(await dieOnEveryDelivery(conn, q), Array.from({ length: BROKER_DELIVERY_LIMIT + 1 }, (_, i) => i))
      const ch = await conn.createChannel()
      const dead = await waitFor('the job in the dead-letter queue', async () => (await ch.get(q.dead, { noAck: true })) || undefined, 10_000)
      assert.deepEqual(JSON.parse(dead.content.toString()), { id: 'kills-on-arrival' })
      assert.equal(dead.properties.headers?.['x-first-death-reason'], 'delivery_limit')
    } finally {
      await conn.close()
    }
  })
})
