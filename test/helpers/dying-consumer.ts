// A consumer that dies as each job arrives, before Mayfly's own attempt
// count can act (a worker that runs out of memory on the job, say): it takes
// the job on a fresh channel and closes the channel without an ack, again
// and again, until the broker's delivery limit dead-letters the job. For
// the tests of that backstop (src/adapters/rabbitmq/topology.ts).
import type { ChannelModel } from 'amqplib'
import { BROKER_DELIVERY_LIMIT, type TopicQueues } from '../../src/adapters/rabbitmq/topology.ts'
import { waitFor } from './wait.ts'

/** Each delivery's x-delivery-count, until the job is in the dead-letter queue (at most BROKER_DELIVERY_LIMIT + 5 deliveries). */
export async function dieOnEveryDelivery(conn: ChannelModel, q: TopicQueues): Promise<number[]> {
  const counts: number[] = []
  const check = await conn.createChannel()
  try {
    for (let i = 0; i < BROKER_DELIVERY_LIMIT + 5; i++) {
      const ch = await conn.createChannel()
      const msg = await waitFor('the job delivered again, or dead-lettered', async () => {
        const m = await ch.get(q.main, { noAck: false })
        if (m) return m
        return (await check.checkQueue(q.dead)).messageCount > 0 ? null : undefined
      }, 10_000, 10)
      await ch.close()
      if (msg === null) break
      counts.push(Number(msg.properties.headers?.['x-delivery-count'] ?? 0))
    }
  } finally {
    await check.close()
  }
  return counts
}
