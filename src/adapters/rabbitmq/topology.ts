// Queue layout of one topic, all durable quorum queues (replicated when the
// broker is a cluster):
//   <ns>.<topic>                 the jobs; consumers read here. The broker
//                                dead-letters (at-least-once) into .dead a
//                                job whose deliveries ended without an ack
//                                more than BROKER_DELIVERY_LIMIT times
//   <ns>.<topic>.retry.<ms>      failed jobs wait here <ms> milliseconds: a
//                                queue-wide x-message-ttl, then dead-lettered
//                                (at-least-once) back into <ns>.<topic>
//   <ns>.<topic>.dead            jobs that failed for good; nothing reads it
// One retry queue per distinct delay, because RabbitMQ expires messages only
// at the head of a queue: with one TTL per queue the head always expires
// first. Naming them by delay means a changed retry setting makes new
// queues instead of conflicting with the arguments of the old ones.
//
// The delivery limit is the broker's backstop, not the attempt count: Mayfly
// counts attempts itself (x-mayfly-attempt plus the broker's
// x-delivery-count, consumer.ts) and dead-letters a job after maxAttempts
// with its error; the broker acts only on a job whose consumer dies before
// Mayfly's count can (say, out of memory as it arrives). The limit is one
// constant, not maxAttempts, so that a changed setting never changes the
// main queue's arguments. A main queue declared by a Mayfly before the limit
// (issue 10) has other arguments, and RabbitMQ refuses to redeclare it (406
// PRECONDITION_FAILED): it is then used as it is (its jobs are not stranded
// in a renamed queue), and assertTopology says so; the policy that adds the
// limit to it in place is legacyPolicy().
import type { Channel, ChannelModel } from 'amqplib'
import { jobRetryDelayMs } from '../../core/jobs.ts'

/** Deliveries of one job without an ack the broker allows before it dead-letters the job (it delivers it once more than this). */
export const BROKER_DELIVERY_LIMIT = 10

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

/** Dead-lettering into `target`; quorum queues dead-letter at most once unless told at-least-once, which needs overflow reject-publish. */
const deadLetterTo = (target: string) => ({
  'x-dead-letter-exchange': '',
  'x-dead-letter-routing-key': target,
  'x-dead-letter-strategy': 'at-least-once',
  'x-overflow': 'reject-publish',
})

/** The main queue's arguments. */
export function mainQueueArguments(q: TopicQueues): Record<string, unknown> {
  return { ...quorum, 'x-delivery-limit': BROKER_DELIVERY_LIMIT, ...deadLetterTo(q.dead) }
}

/** What assertTopology found. */
export interface DeclaredTopology {
  /** the broker's refusal when the main queue exists with other arguments (declared by an older Mayfly) and is used as it is */
  mainRefused: string | null
}

/**
 * Declares the topic's queues; idempotent. A main queue that exists with
 * other arguments is used as it is (mainRefused says why); any other
 * refusal throws. Every declaration has a channel of its own, since a
 * refused one closes its channel.
 */
export async function assertTopology(conn: ChannelModel, q: TopicQueues): Promise<DeclaredTopology> {
  // the dead-letter queue first: the main queue's dead-lettering routes there
  await onChannel(conn, (ch) => ch.assertQueue(q.dead, { durable: true, arguments: quorum }))
  let mainRefused: string | null = null
  try {
    await onChannel(conn, (ch) => ch.assertQueue(q.main, { durable: true, arguments: mainQueueArguments(q) }))
  } catch (err) {
    if ((err as { code?: unknown }).code !== 406) throw err
    mainRefused = err instanceof Error ? err.message : String(err)
    await onChannel(conn, (ch) => ch.checkQueue(q.main)) // it exists: use it
  }
  await onChannel(conn, async (ch) => {
    for (const r of retryQueues(q)) {
      await ch.assertQueue(r.queue, { durable: true, arguments: { ...quorum, 'x-message-ttl': r.delayMs, ...deadLetterTo(q.main) } })
    }
  })
  return { mainRefused }
}

/** The rabbitmqctl arguments of the policy that gives an older main queue the delivery limit in place (no job moves). */
export function legacyPolicy(q: TopicQueues): string[] {
  const definition = { 'delivery-limit': BROKER_DELIVERY_LIMIT, 'dead-letter-exchange': '', 'dead-letter-routing-key': q.dead, 'dead-letter-strategy': 'at-least-once', overflow: 'reject-publish' }
  return ['set_policy', '--apply-to', 'queues', `${q.main}-delivery-limit`, `^${q.main.replaceAll('.', '\\.')}$`, JSON.stringify(definition)]
}

/** legacyPolicy as a command to paste into a shell. */
export function legacyPolicyCommand(q: TopicQueues): string {
  return ['rabbitmqctl', ...legacyPolicy(q).map((a) => (/^[A-Za-z0-9._-]+$/.test(a) ? a : `'${a}'`))].join(' ')
}

/** Runs `fn` on a short-lived channel; a refused declaration or a failing check closes only this channel. */
export async function onChannel<T>(conn: ChannelModel, fn: (ch: Channel) => Promise<T>): Promise<T> {
  const ch = await conn.createChannel()
  ch.on('error', () => {}) // the rejected call reports it
  try {
    return await fn(ch)
  } finally {
    await ch.close().catch(() => {})
  }
}
