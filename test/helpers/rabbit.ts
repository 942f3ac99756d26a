// Removes a test's RabbitMQ queues, so that runs leave nothing on the broker.
import { connect } from 'amqplib'
import { retryQueues, topicQueues } from '../../src/adapters/rabbitmq/topology.ts'
import { DEFAULT_MAX_RETRY_DELAY_MS } from '../../src/core/jobs.ts'

export async function deleteTopicQueues(
  url: string,
  namespace: string,
  topic: string,
  policy: { maxAttempts: number; retryDelayMs: number; maxRetryDelayMs?: number },
): Promise<void> {
  const q = topicQueues(namespace, topic, { maxRetryDelayMs: DEFAULT_MAX_RETRY_DELAY_MS, ...policy })
  const conn = await connect(url)
  try {
    const ch = await conn.createChannel()
    for (const name of [q.main, q.dead, ...retryQueues(q).map((r) => r.queue)]) await ch.deleteQueue(name)
  } finally {
    await conn.close()
  }
}
