// Queue layout of one topic, all durable quorum queues (replicated when the
// broker is a cluster):
//   <ns>.<topic>                 the jobs; consumers read here
//   <ns>.<topic>.retry.<ms>      failed jobs wait here <ms> milliseconds: a
//                                queue-wide x-message-ttl, then dead-lettered
//                                (at-least-once) back into <ns>.<topic>
//   <ns>.<topic>.dead            jobs that failed for good; nothing reads it
// One retry queue per distinct delay, because RabbitMQ expires messages only
// at the head of a queue: with one TTL per queue the head always expires
// first. Naming them by delay means a changed retry setting makes new
// queues instead of conflicting with the arguments of the old ones.
import type { Channel } from 'amqplib'
import { jobRetryDelayMs } from '../../core/jobs.ts'

export interface TopicQueues {
  main: string
  dead: string
  /** retry queue per attempt that may fail and be retried (index 0: after attempt 1) */
  retryAfter: { delayMs: number; queue: string }[]
}

export function topicQueues(ns: string, topic: string, policy: { maxAttempts: number; retryDelayMs: number; maxRetryDelayMs: number }): TopicQueues {
  const main = `${ns}.${topic}`
  const retryAfter = []
  for (let attempt = 1; attempt < policy.maxAttempts; attempt++) {
    const delayMs = jobRetryDelayMs(attempt, policy.retryDelayMs, policy.maxRetryDelayMs)
    retryAfter.push({ delayMs, queue: `${main}.retry.${delayMs}` })
  }
  return { main, dead: `${main}.dead`, retryAfter }
}

/** Distinct retry queues of a topic. */
export function retryQueues(q: TopicQueues): { delayMs: number; queue: string }[] {
  return [...new Map(q.retryAfter.map((r) => [r.queue, r])).values()]
}

const quorum = { 'x-queue-type': 'quorum' }

/** Declares the topic's queues; idempotent. Fails (and closes `ch`) if one exists with other arguments. */
export async function assertTopology(ch: Channel, q: TopicQueues): Promise<void> {
  await ch.assertQueue(q.main, { durable: true, arguments: quorum })
  await ch.assertQueue(q.dead, { durable: true, arguments: quorum })
  for (const r of retryQueues(q)) {
    await ch.assertQueue(r.queue, {
      durable: true,
      arguments: {
        ...quorum,
        'x-message-ttl': r.delayMs,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': q.main,
        // quorum queues dead-letter at most once unless told otherwise;
        // at-least-once needs overflow reject-publish
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    })
  }
}
