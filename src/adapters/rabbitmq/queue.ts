// The JobQueue port on RabbitMQ. Layout per topic: see topology.ts.
//
// - publish: a ConfirmChannel on a publisher connection of its own; resolves
//   on the broker's ack. A nack, a closed channel or no confirm in time
//   reopens the connection (on RabbitMQ 3.10 a quorum queue channel can
//   nack forever after a leader change) and publishes again, until
//   publishTimeoutMs; then Unavailable. So a job may be stored twice, never
//   acknowledged and lost.
// - consume: see consumer.ts. The attempt number travels in the
//   `x-mayfly-attempt` header of the republished job; deliveries that ended
//   without an ack (a consumer died) add the broker's x-delivery-count.
//   Behind that count the broker dead-letters a job delivered more than
//   BROKER_DELIVERY_LIMIT times without an ack (topology.ts): a consumer
//   that dies before Mayfly counts cannot loop on one job for ever.
// - close(): closes both connections at once; jobs still running are not
//   acked and the broker delivers them again. Stop consumers first to drain.
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib'
import { randomUUID } from 'node:crypto'
import type { Logger } from '../../log.ts'
import type { Consumer, DependencyStatus, JobQueue, QueueDepth } from '../../ports.ts'
import { Unavailable } from '../../core/errors.ts'
import { DEFAULT_MAX_RETRY_DELAY_MS } from '../../core/jobs.ts'
import { redactUrl } from '../redact-url.ts'
import { probeBroker, type BrokerState } from './broker-probe.ts'
import { superviseConnection } from './connection.ts'
import { ATTEMPT_HEADER, startConsumer, type RunningConsumer } from './consumer.ts'
import { assertTopology, legacyPolicyCommand, onChannel, retryQueues, topicQueues, type TopicQueues } from './topology.ts'

export interface RabbitQueueOptions {
  /** amqp://user:pass@host:port/vhost, or several (brokers of one cluster, tried in turn) */
  url: string | string[]
  /** prefix of every queue name */
  namespace: string
  /** attempts before a failing job is dead-lettered (one whose consumer dies every time: also at most BROKER_DELIVERY_LIMIT + 1 deliveries) */
  maxAttempts: number
  /** wait after the first failure, doubled after every further one */
  retryDelayMs: number
  /** cap of that wait (default 5 min) */
  maxRetryDelayMs?: number
  /** jobs a consumer runs at once when consume() does not say (default 1); it is also the channel prefetch */
  prefetch?: number
  /** how long publish() keeps trying before Unavailable (default 10 s) */
  publishTimeoutMs?: number
  /** pause between reconnect attempts, steady (default 500 ms) */
  reconnectDelayMs?: number
  /** TCP connect timeout (default 2 s) */
  connectTimeoutMs?: number
  /** AMQP heartbeat (default 5 s) */
  heartbeatSeconds?: number
  /** how long Consumer.stop() waits for running jobs before handing them back (default 30 s) */
  stopTimeoutMs?: number
  log: Logger
}

export function createRabbitQueue(opts: RabbitQueueOptions): JobQueue {
  const log = opts.log.child({ adapter: 'rabbitmq-queue' })
  const urls = Array.isArray(opts.url) ? opts.url : [opts.url]
  if (urls.length === 0) throw new Error('createRabbitQueue: no url')
  const reconnectDelayMs = opts.reconnectDelayMs ?? 500
  const publishTimeoutMs = opts.publishTimeoutMs ?? 10_000
  const policy = { maxAttempts: opts.maxAttempts, retryDelayMs: opts.retryDelayMs, maxRetryDelayMs: opts.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS }
  const connection = (role: string) =>
    superviseConnection({
      urls,
      name: `mayfly-${opts.namespace}-${role}`,
      reconnectDelayMs,
      connectTimeoutMs: opts.connectTimeoutMs ?? 2000,
      heartbeatSeconds: opts.heartbeatSeconds ?? 5,
      log,
    })
  // Publishers and consumers on separate connections: a publisher connection
  // reopened after a nack does not take running jobs down with it.
  const pub = connection('publish')
  const sub = connection('consume')
  const consumers = new Map<string, Set<RunningConsumer>>()
  let closed = false
  let brokerLook: { at: number; value: Promise<BrokerState[]> } | null = null

  const queuesOf = (topic: string): TopicQueues => {
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(topic)) throw new Error(`invalid topic name: ${topic}`)
    return topicQueues(opts.namespace, topic, policy)
  }

  // Topology is declared once per topic and connection. A main queue an
  // older Mayfly declared without the delivery limit is used as it is, with
  // one warning per process that says how to add the limit in place.
  const declared = new WeakMap<ChannelModel, Map<string, Promise<void>>>()
  const withoutDeliveryLimit = new Set<string>()
  function ensureTopology(conn: ChannelModel, topic: string): Promise<void> {
    let perConn = declared.get(conn)
    if (!perConn) declared.set(conn, (perConn = new Map()))
    let p = perConn.get(topic)
    if (!p) {
      const q = queuesOf(topic)
      p = assertTopology(conn, q).then(({ mainRefused }) => {
        if (mainRefused === null) {
          withoutDeliveryLimit.delete(q.main)
        } else if (!withoutDeliveryLimit.has(q.main)) {
          withoutDeliveryLimit.add(q.main)
          log.warn(
            { queue: q.main, refused: mainRefused, policy: legacyPolicyCommand(q) },
            'job queue declared by an older Mayfly: used as it is, without the broker\'s delivery limit (Mayfly still dead-letters after maxAttempts); the policy adds the limit in place, or delete the queue once empty',
          )
        }
      })
      perConn.set(topic, p)
      p.catch(() => perConn.delete(topic))
    }
    return p
  }

  // One confirm channel per publisher connection, made on demand. Messages
  // are mandatory: one the broker cannot route (its queue was deleted) comes
  // back before its confirm, and counts as not published.
  let confirm: { conn: ChannelModel; ch: Promise<ConfirmChannel> } | null = null
  const returned = new WeakMap<ConfirmChannel, Set<string>>()
  function confirmChannel(conn: ChannelModel): Promise<ConfirmChannel> {
    if (confirm?.conn !== conn) {
      const ch = conn.createConfirmChannel().then((c) => {
        c.on('error', (err: Error) => log.warn({ err }, 'publish channel error'))
        const back = new Set<string>()
        returned.set(c, back)
        c.on('return', (msg: ConsumeMessage) => {
          if (msg.properties.messageId) back.add(String(msg.properties.messageId))
        })
        c.on('close', () => {
          if (confirm?.ch === ch) confirm = null
        })
        return c
      })
      ch.catch(() => {
        if (confirm?.ch === ch) confirm = null
      })
      confirm = { conn, ch }
    }
    return confirm.ch
  }

  /** Publishes to a queue and waits for the broker's confirm, republishing on a nack or a lost channel. */
  async function send(queue: string, content: Buffer, headers: Record<string, unknown>, topic: string, like?: ConsumeMessage): Promise<void> {
    const deadline = Date.now() + publishTimeoutMs
    const props = {
      persistent: true,
      mandatory: true,
      contentType: 'application/json',
      messageId: like?.properties.messageId ?? randomUUID(),
      timestamp: like?.properties.timestamp ?? Date.now(),
      type: topic,
      headers,
    }
    let lastError: unknown = null
    for (;;) {
      const remaining = deadline - Date.now()
      if (remaining <= 0 || closed) {
        throw new Unavailable(`job queue unavailable: ${errorText(lastError)}`, 'unavailable', { cause: lastError })
      }
      let conn: ChannelModel | null = null
      try {
        conn = await pub.get(remaining)
        await ensureTopology(conn, topic)
        const ch = await confirmChannel(conn)
        await confirmed(ch, queue, content, props, Math.min(remaining, 2000))
        if (returned.get(ch)?.delete(props.messageId)) throw new Error(`queue ${queue} does not exist`)
        return
      } catch (err) {
        lastError = err
        if (conn) pub.recycle(conn, `publish failed: ${errorText(err)}`)
        await new Promise((r) => setTimeout(r, Math.min(50, Math.max(0, deadline - Date.now()))))
      }
    }
  }

  return {
    async publish(topic, job) {
      const { main } = queuesOf(topic)
      await send(main, Buffer.from(JSON.stringify(job)), { [ATTEMPT_HEADER]: 1 }, topic)
    },

    async consume(topic, handler, options): Promise<Consumer> {
      if (closed) throw new Unavailable('job queue closed')
      const queues = queuesOf(topic)
      const concurrency = Math.max(1, options?.concurrency ?? opts.prefetch ?? 1)
      const running = startConsumer(
        {
          topic,
          queues,
          conn: sub,
          ensureTopology: (conn) => ensureTopology(conn, topic),
          send: (queue, content, headers, like) => send(queue, content, headers, topic, like),
          maxAttempts: opts.maxAttempts,
          reconnectDelayMs,
          stopTimeoutMs: opts.stopTimeoutMs ?? 30_000,
          log: log.child({ topic }),
        },
        handler,
        concurrency,
      )
      let set = consumers.get(topic)
      if (!set) consumers.set(topic, (set = new Set()))
      set.add(running)
      // Wait for the first attach, but not forever: with the broker down the
      // consumer keeps trying in the background and starts when it is back.
      let timer: NodeJS.Timeout | undefined
      const attached = await Promise.race([
        running.attached.then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), publishTimeoutMs))),
      ])
      clearTimeout(timer)
      if (!attached) log.warn({ topic }, 'consumer not attached yet; it will start when the broker is reachable')
      return {
        async stop() {
          await running.stop()
          set.delete(running)
        },
      }
    },

    async depths(topics): Promise<QueueDepth[]> {
      try {
        const conn = await pub.get(pub.isDown() ? 0 : 2000)
        for (const topic of topics) await ensureTopology(conn, topic)
        return await onChannel(conn, async (ch) => {
          const out: QueueDepth[] = []
          for (const topic of topics) {
            const q = queuesOf(topic)
            const main = await ch.checkQueue(q.main)
            const dead = await ch.checkQueue(q.dead)
            let retrying = 0
            for (const r of retryQueues(q)) retrying += (await ch.checkQueue(r.queue)).messageCount
            out.push({
              queue: q.main,
              ready: main.messageCount,
              // AMQP does not report unacked counts; these are the jobs running in this process
              unacked: [...(consumers.get(topic) ?? [])].reduce((n, c) => n + c.inFlight(), 0),
              retrying,
              dead: dead.messageCount,
              consumers: main.consumerCount,
            })
          }
          return out
        })
      } catch (err) {
        throw err instanceof Unavailable ? err : new Unavailable(`job queue unavailable: ${errorText(err)}`, 'unavailable', { cause: err })
      }
    },

    async status(): Promise<DependencyStatus> {
      // each broker asked on its own (a frozen one answers nothing), at most once a second for every caller
      if (brokerLook === null || Date.now() - brokerLook.at > 1000) {
        brokerLook = {
          at: Date.now(),
          value: Promise.all(urls.map(async (url): Promise<BrokerState> => {
            const r = await probeBroker(url, 1000)
            return r.ok ? { url: redactUrl(url), state: 'up' } : { url: redactUrl(url), state: 'down', error: r.error }
          })),
        }
      }
      const brokers = await brokerLook.value
      const detail: Record<string, unknown> = {
        brokers,
        brokers_up: brokers.filter((b) => b.state === 'up').length,
        namespace: opts.namespace,
        consumers: [...consumers.values()].reduce((n, s) => n + s.size, 0),
        consumerConnection: sub.current() ? 'open' : 'down',
      }
      if (withoutDeliveryLimit.size > 0) detail.withoutDeliveryLimit = [...withoutDeliveryLimit]
      try {
        const conn = await pub.get(pub.isDown() ? 0 : 1000)
        const server = conn.connection.serverProperties
        // the broker this process publishes through
        const connected = redactUrl(urls[pub.currentIndex()] ?? '')
        return { name: 'rabbitmq', kind: 'queue', ok: true, detail: { ...detail, connected, product: server.product, version: server.version, cluster: server.cluster_name } }
      } catch (err) {
        return { name: 'rabbitmq', kind: 'queue', ok: false, detail: { ...detail, error: errorText(err) } }
      }
    },

    async close() {
      if (closed) return
      closed = true
      for (const set of consumers.values()) for (const c of set) c.kill()
      await Promise.all([pub.close(), sub.close()])
    },
  }
}

/** Waits for the broker's confirm of one message; rejects on a nack, a closed channel or after timeoutMs. */
function confirmed(ch: ConfirmChannel, queue: string, content: Buffer, props: object, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no publisher confirm within ${timeoutMs} ms`)), timeoutMs)
    try {
      ch.sendToQueue(queue, content, props, (err: unknown) => {
        clearTimeout(timer)
        if (err) reject(err instanceof Error ? err : new Error('message nacked by the broker'))
        else resolve()
      })
    } catch (err) {
      clearTimeout(timer)
      reject(err instanceof Error ? err : new Error(String(err)))
    }
  })
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : err === null ? 'unknown error' : String(err)
}
