// One consumer of a topic: its own channel on the consumer connection, with
// prefetch = concurrency so every delivered job is running (none waits in a
// buffer where a crash would count it as an attempt). Re-attaches after the
// channel or connection drops. Acks only after the handler resolved, or
// after the job was safely republished to a retry or dead-letter queue.
import type { Channel, ConsumeMessage } from 'amqplib'
import type { Logger } from '../../log.ts'
import type { Consumer, JobHandler } from '../../ports.ts'
import { PermanentJobError } from '../../core/errors.ts'
import { createPauses } from '../../core/pauses.ts'
import type { SupervisedConnection } from './connection.ts'
import type { TopicQueues } from './topology.ts'

/** Sends a message with a publisher confirm; throws Unavailable. */
export type Send = (queue: string, content: Buffer, headers: Record<string, unknown>, like?: ConsumeMessage) => Promise<void>

export interface ConsumerDeps {
  topic: string
  queues: TopicQueues
  conn: SupervisedConnection
  ensureTopology(conn: Awaited<ReturnType<SupervisedConnection['get']>>): Promise<void>
  send: Send
  maxAttempts: number
  reconnectDelayMs: number
  stopTimeoutMs: number
  log: Logger
}

export interface RunningConsumer extends Consumer {
  /** jobs running now */
  inFlight(): number
  /** resolves once attached the first time (or never: race it with a timeout) */
  attached: Promise<void>
  /** stops at once, without waiting or acking: unacked jobs go back when the connection closes */
  kill(): void
}

export const ATTEMPT_HEADER = 'x-mayfly-attempt'

/** Our attempt count plus the broker's count of deliveries that ended without an ack (a consumer died). */
export function attemptOf(msg: ConsumeMessage): number {
  const h = (msg.properties.headers ?? {}) as Record<string, unknown>
  const ours = typeof h[ATTEMPT_HEADER] === 'number' ? h[ATTEMPT_HEADER] : 1
  const returned = typeof h['x-delivery-count'] === 'number' ? h['x-delivery-count'] : msg.fields.redelivered ? 1 : 0
  return ours + returned
}

export function startConsumer(deps: ConsumerDeps, handler: JobHandler, concurrency: number): RunningConsumer {
  const { queues, log } = deps
  const running = new Set<Promise<void>>()
  let stopped = false
  let current: { ch: Channel; tag: string; open: boolean } | null = null
  const pauses = createPauses()
  let markAttached!: () => void
  const attached = new Promise<void>((resolve) => (markAttached = resolve))

  async function attachLoop(): Promise<void> {
    while (!stopped) {
      let ch: Channel | null = null
      try {
        const conn = await deps.conn.get(5000)
        await deps.ensureTopology(conn)
        ch = await conn.createChannel()
        const chan = ch
        const state = { ch: chan, tag: '', open: true }
        const closed = new Promise<void>((resolve) =>
          chan.on('close', () => {
            state.open = false
            resolve()
          }),
        )
        chan.on('error', (err: Error) => log.warn({ err }, 'consumer channel error'))
        await chan.prefetch(concurrency)
        if (stopped) {
          await chan.close()
          return
        }
        const ok = await chan.consume(queues.main, (msg) => onMessage(state, msg), { noAck: false })
        state.tag = ok.consumerTag
        if (stopped) {
          await chan.close() // stop() came while attaching
          return
        }
        current = state
        markAttached()
        await closed
        current = null
        if (!stopped) log.warn('consumer channel closed, re-attaching')
      } catch (err) {
        if (!stopped) log.warn({ err }, 'consumer could not attach, retrying')
        ch?.close().catch(() => {})
      }
      if (!stopped) await pauses.sleep(deps.reconnectDelayMs)
    }
  }

  function onMessage(state: { ch: Channel; open: boolean }, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // cancelled by the broker (queue deleted, leader moved): start over
      state.ch.close().catch(() => {})
      return
    }
    if (stopped) {
      settle(state, () => state.ch.nack(msg, false, true))
      return
    }
    const p = handle(state, msg).catch((err: unknown) => log.error({ err }, 'consumer bug'))
    running.add(p)
    void p.finally(() => running.delete(p))
  }

  /** Acks or nacks on the channel that delivered the job; a closed channel means the broker already took it back. */
  function settle(state: { ch: Channel; open: boolean }, fn: () => void): void {
    if (!state.open) return
    try {
      fn()
    } catch {
      // closed in between: the job is redelivered
    }
  }

  async function handle(state: { ch: Channel; open: boolean }, msg: ConsumeMessage): Promise<void> {
    const attempt = attemptOf(msg)
    const jobLog = log.child({ jobId: msg.properties.messageId, attempt })
    let failure: unknown = null
    if (attempt > deps.maxAttempts) {
      failure = new PermanentJobError(`delivered ${attempt} times without finishing`)
    } else {
      let job: Record<string, unknown> | null = null
      try {
        job = JSON.parse(msg.content.toString('utf8')) as Record<string, unknown>
      } catch {
        failure = new PermanentJobError('job is not valid JSON')
      }
      if (job !== null) {
        try {
          await handler(job, { attempt })
          settle(state, () => state.ch.ack(msg))
          return
        } catch (err) {
          failure = err ?? new Error('job failed')
        }
      }
    }
    // The channel died while the job ran: the broker redelivers it, and that
    // redelivery counts as the next attempt. Republishing too would double it.
    if (!state.open) return
    const error = failure instanceof Error ? failure.message : String(failure)
    try {
      if (failure instanceof PermanentJobError || attempt >= deps.maxAttempts) {
        await deps.send(queues.dead, msg.content, { [ATTEMPT_HEADER]: attempt, 'x-mayfly-error': error.slice(0, 1000) }, msg)
        jobLog.error({ err: failure, topic: deps.topic }, 'job dead-lettered')
      } else {
        const retry = queues.retryAfter[attempt - 1]!
        await deps.send(retry.queue, msg.content, { [ATTEMPT_HEADER]: attempt + 1 }, msg)
        jobLog.warn({ err: failure, topic: deps.topic, delayMs: retry.delayMs }, 'job failed, will retry')
      }
      settle(state, () => state.ch.ack(msg))
    } catch (err) {
      // could not park it: hand it back now (the broker counts the delivery)
      jobLog.warn({ err }, 'could not republish a failed job; requeued')
      settle(state, () => state.ch.nack(msg, false, true))
    }
  }

  void attachLoop().catch((err: unknown) => log.error({ err }, 'consumer loop died'))

  let stopping: Promise<void> | null = null
  return {
    attached,
    inFlight: () => running.size,
    kill() {
      stopped = true
      pauses.wake()
    },
    stop() {
      stopping ??= (async () => {
        stopped = true
        pauses.wake()
        const state = current
        if (state?.open) await state.ch.cancel(state.tag).catch(() => {})
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          Promise.all([...running]),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, deps.stopTimeoutMs))),
        ])
        clearTimeout(timer)
        if (running.size > 0) log.warn({ jobs: running.size }, 'consumer stopped with jobs running; they go back to the queue')
        // closing the channel hands every unacked job back to the broker
        if (state?.open) await state.ch.close().catch(() => {})
      })()
      return stopping
    },
  }
}
