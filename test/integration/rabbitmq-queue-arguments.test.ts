// The main queue's delivery limit and dead-lettering (issue 10), on the
// machine's broker (127.0.0.1:5672): the queue is declared with them; the
// broker dead-letters a job whose consumer dies before Mayfly's own attempt
// count can act (BROKER_DELIVERY_LIMIT + 1 deliveries without an ack); and a
// main queue an older Mayfly declared without them (RabbitMQ refuses to
// redeclare it: 406) is used as it is: its waiting jobs run, publishing
// goes on, one warning names the policy that adds the limit in place, and
// that policy works.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { connect } from 'amqplib'
import { pino } from 'pino'
import { createRabbitQueue } from '../../src/adapters/rabbitmq/queue.ts'
import { BROKER_DELIVERY_LIMIT, legacyPolicy, legacyPolicyCommand, topicQueues } from '../../src/adapters/rabbitmq/topology.ts'
import { DEFAULT_MAX_RETRY_DELAY_MS } from '../../src/core/jobs.ts'
import { createLogger } from '../../src/log.ts'
import { dieOnEveryDelivery } from '../helpers/dying-consumer.ts'
import { deleteTopicQueues } from '../helpers/rabbit.ts'
import { waitFor } from '../helpers/wait.ts'

const run = promisify(execFile)
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672'
const TOPIC = 'jobs'
const policy = { maxAttempts: 3, retryDelayMs: 20 }

/** A namespace of the test's own, a queue adapter on it, and a raw connection; everything removed afterwards. */
async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  const ns = `t-${randomUUID().slice(0, 8)}`
  const conn = await connect(AMQP_URL)
  const cleanups: (() => Promise<void>)[] = []
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn()
    await conn.close()
    await deleteTopicQueues(AMQP_URL, ns, TOPIC, policy)
  })
  const q = topicQueues(ns, TOPIC, { ...policy, maxRetryDelayMs: DEFAULT_MAX_RETRY_DELAY_MS })
  return { ns, q, conn, cleanups }
}

async function queueArguments(name: string): Promise<Record<string, unknown>> {
  const { stdout } = await run('rabbitmqctl', ['list_queues', 'name', 'arguments', '--quiet', '--formatter', 'json'])
  // each argument as [name, AMQP type, value]
  const found = (JSON.parse(stdout) as { name: string; arguments: [string, string, unknown][] }[]).find((q) => q.name === name)
  assert.ok(found, `queue ${name} on the broker`)
  return Object.fromEntries(found.arguments.map(([key, , value]) => [key, value]))
}

test('the main queue carries the delivery limit; the broker dead-letters a job whose consumer dies before Mayfly counts', async (t) => {
  const { ns, q, conn, cleanups } = await setup(t)
  const queue = createRabbitQueue({ url: AMQP_URL, namespace: ns, ...policy, reconnectDelayMs: 50, log: createLogger('silent') })
  cleanups.push(() => queue.close())
  await queue.publish(TOPIC, { id: 'kills-on-arrival' })
  assert.deepEqual(await queueArguments(q.main), {
    'x-queue-type': 'quorum',
    'x-delivery-limit': BROKER_DELIVERY_LIMIT,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': q.dead,
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  })

  const counts = await dieOnEveryDelivery(conn, q)
  assert.deepEqual(counts, Array.from({ length: BROKER_DELIVERY_LIMIT + 1 }, (_, i) => i), 'delivered limit + 1 times, then no more')
  await waitFor('the job in the dead-letter queue', async () => (await queue.depths([TOPIC]))[0]!.dead === 1, 5000)
  const ch = await conn.createChannel()
  const dead = await ch.get(q.dead, { noAck: true })
  assert.ok(dead)
  assert.deepEqual(JSON.parse(dead.content.toString()), { id: 'kills-on-arrival' })
  assert.equal(dead.properties.headers?.['x-first-death-reason'], 'delivery_limit')
  await ch.close()
})

test('a main queue declared by an older Mayfly (no delivery limit) is used as it is, with one warning; its policy adds the limit', async (t) => {
  const { ns, q, conn, cleanups } = await setup(t)
  // what Mayfly declared before issue 10, with a job waiting in it
  const ch = await conn.createChannel()
  await ch.assertQueue(q.main, { durable: true, arguments: { 'x-queue-type': 'quorum' } })
  ch.sendToQueue(q.main, Buffer.from(JSON.stringify({ n: 0 })), { persistent: true, headers: { 'x-mayfly-attempt': 1 } })
  await waitFor('the old job waiting', async () => (await ch.checkQueue(q.main)).messageCount === 1, 5000)

  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  const queue = createRabbitQueue({ url: AMQP_URL, namespace: ns, ...policy, reconnectDelayMs: 50, log: pino({ level: 'warn' }, sink) })
  cleanups.push(() => queue.close())
  const got: unknown[] = []
  const consumer = await queue.consume(TOPIC, async (job) => {
    got.push(job.n)
  })
  await queue.publish(TOPIC, { n: 1 })
  await waitFor('the old job and the new one consumed', () => got.length === 2, 5000)
  assert.deepEqual(got.sort(), [0, 1])
  await consumer.stop()
  assert.deepEqual(await queueArguments(q.main), { 'x-queue-type': 'quorum' }, 'the old queue is left as it was')

  const warnings = lines.filter((l) => l.queue === q.main)
  assert.equal(warnings.length, 1, 'one warning, however many connections declared the topic')
  assert.equal(warnings[0]!.policy, legacyPolicyCommand(q))
  assert.match(String(warnings[0]!.refused), /PRECONDITION_FAILED/)
  assert.deepEqual((await queue.status()).detail.withoutDeliveryLimit, [q.main])

  // the warning's policy, as an operator would apply it: the broker's backstop now acts on the old queue
  const args = legacyPolicy(q)
  await run('rabbitmqctl', args)
  cleanups.push(async () => void (await run('rabbitmqctl', ['clear_policy', args[3]!])))
  await waitFor('the policy on the queue', async () => {
    const { stdout } = await run('rabbitmqctl', ['list_queues', 'name', 'policy', '--quiet', '--formatter', 'json'])
    return (JSON.parse(stdout) as { name: string; policy: string }[]).some((x) => x.name === q.main && x.policy === args[3])
  }, 10_000, 200)
  await queue.publish(TOPIC, { n: 2 })
  assert.deepEqual(await dieOnEveryDelivery(conn, q), Array.from({ length: BROKER_DELIVERY_LIMIT + 1 }, (_, i) => i))
  assert.equal((await queue.depths([TOPIC]))[0]!.dead, 1)
})
