// MAYFLY_AMQP_URL as a list of brokers (DESIGN §6, issue 7 bug 9), from the
// environment through config.ts and wiring.ts to the RabbitMQ adapter: with
// the first broker a closed port, jobs go through the second.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { test } from 'node:test'
import { loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import { createInfrastructure } from '../../src/wiring.ts'
import { deleteTopicQueues } from '../helpers/rabbit.ts'
import { waitFor } from '../helpers/wait.ts'

const BROKER = 'amqp://guest:guest@127.0.0.1:5672'
const CLOSED = 'amqp://guest:guest@127.0.0.1:1'

test('a broker list whose first member is a closed port: the process publishes and consumes through the second', async (t) => {
  const namespace = `t-${randomUUID().slice(0, 8)}`
  const config = loadConfig({ MAYFLY_AMQP_URL: `${CLOSED}, ${BROKER}`, MAYFLY_DATA_DIR: 'memory://', MAYFLY_NAMESPACE: namespace })
  assert.deepEqual(config.MAYFLY_AMQP_URL, [CLOSED, BROKER])
  const infra = await createInfrastructure(config, createLogger('silent'), 'a-cluster-secret-for-tests')
  const policy = { maxAttempts: config.MAYFLY_JOB_MAX_ATTEMPTS, retryDelayMs: config.MAYFLY_JOB_RETRY_DELAY_MS }
  t.after(async () => {
    await infra.close()
    await deleteTopicQueues(BROKER, namespace, 'brokers', policy)
  })

  const got: unknown[] = []
  const consumer = await infra.queue.consume('brokers', async (job) => {
    got.push(job.n)
  })
  t.after(() => consumer.stop())
  await infra.queue.publish('brokers', { n: 1 })
  await waitFor('the job delivered', () => got.length === 1, 15_000)
  assert.deepEqual(got, [1])
  const status = await infra.queue.status()
  assert.equal(status.ok, true)
  // both brokers known to the adapter (credentials redacted), each with whether it answers AMQP
  const brokers = status.detail.brokers as { url: string; state: string }[]
  assert.deepEqual(brokers.map((b) => [new URL(b.url).port, b.state]), [['1', 'down'], ['5672', 'up']])
  assert.equal(status.detail.brokers_up, 1)
  assert.equal(new URL(String(status.detail.connected)).port, '5672', 'the broker it publishes through')
  assert.equal(JSON.stringify(status.detail).includes('guest@'), false)
})
