// The JobQueue port in one process, with RabbitMQ's semantics as the
// rabbitmq adapter implements them: a failed job is retried after
// retryDelayMs * 2^(attempt-1); PermanentJobError or the last attempt sends
// it to the dead-letter list; a job whose consumer stops before it finishes
// goes back to the queue, and that delivery counts as an attempt (as
// RabbitMQ's x-delivery-count does), so a job that never finishes still ends
// dead after maxAttempts. Jobs are JSON-serialised on publish, as on the wire.
//
// Not durable across restarts: the queue lives and dies with the process.
import { randomUUID } from 'node:crypto'
import type { Logger } from '../../log.ts'
import type { Consumer, DependencyStatus, JobHandler, JobQueue, QueueDepth } from '../../ports.ts'
import { PermanentJobError, Unavailable } from '../../core/errors.ts'
import { jobRetryDelayMs } from '../../core/jobs.ts'

export interface EmbeddedQueueOptions {
  /** attempts before a failing job is dead-lettered */
  maxAttempts: number
  /** wait after the first failure, doubled after every further one */
  retryDelayMs: number
  /** cap of that wait (default 5 min) */
  maxRetryDelayMs?: number
  /** how long Consumer.stop() waits for running jobs before giving them back to the queue (default 30 s) */
  stopTimeoutMs?: number
  log: Logger
}

interface Envelope {
  id: string
  body: string
  attempt: number
}

interface Delivery {
  envelope: Envelope
  abandoned: boolean
  done: Promise<void>
}

interface ConsumerState {
  handler: JobHandler
  concurrency: number
  running: Set<Delivery>
  stopped: boolean
}

interface Topic {
  ready: Envelope[]
  retrying: Set<NodeJS.Timeout>
  dead: { envelope: Envelope; error: string }[]
  consumers: ConsumerState[]
  next: number
}

export function createEmbeddedQueue(opts: EmbeddedQueueOptions): JobQueue {
  const log = opts.log.child({ adapter: 'embedded-queue' })
  const stopTimeoutMs = opts.stopTimeoutMs ?? 30_000
  const topics = new Map<string, Topic>()
  const consumers = new Set<{ stop(): Promise<void> }>()
  let closed = false

  const topicOf = (name: string): Topic => {
    let t = topics.get(name)
    if (!t) {
      t = { ready: [], retrying: new Set(), dead: [], consumers: [], next: 0 }
      topics.set(name, t)
    }
    return t
  }

  function deadLetter(name: string, envelope: Envelope, error: string): void {
    topicOf(name).dead.push({ envelope, error })
    log.error({ topic: name, jobId: envelope.id, attempt: envelope.attempt, error }, 'job dead-lettered')
  }

  /** Hands ready jobs to consumers with free slots, round robin. */
  function dispatch(name: string): void {
    const t = topicOf(name)
    while (t.ready.length > 0) {
      const free = t.consumers.filter((c) => !c.stopped && c.running.size < c.concurrency)
      if (free.length === 0) return
      const c = free[t.next++ % free.length]!
      const envelope = t.ready.shift()!
      if (envelope.attempt > opts.maxAttempts) {
        deadLetter(name, envelope, `delivered ${envelope.attempt} times without finishing`)
        continue
      }
      run(name, c, envelope)
    }
  }

  function run(name: string, c: ConsumerState, envelope: Envelope): void {
    const delivery: Delivery = { envelope, abandoned: false, done: Promise.resolve() }
    c.running.add(delivery)
    delivery.done = (async () => {
      let failure: unknown = null
      try {
        await c.handler(JSON.parse(envelope.body) as Record<string, unknown>, { attempt: envelope.attempt })
      } catch (err) {
        failure = err ?? new Error('job failed')
      }
      if (delivery.abandoned) return // given back to the queue by stop(); this outcome no longer counts
      c.running.delete(delivery)
      if (failure !== null) settleFailure(name, envelope, failure)
      dispatch(name)
    })()
  }

  function settleFailure(name: string, envelope: Envelope, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err)
    if (err instanceof PermanentJobError || envelope.attempt >= opts.maxAttempts) {
      deadLetter(name, envelope, message)
      return
    }
    const delay = jobRetryDelayMs(envelope.attempt, opts.retryDelayMs, opts.maxRetryDelayMs)
    log.warn({ err, topic: name, jobId: envelope.id, attempt: envelope.attempt, delayMs: delay }, 'job failed, will retry')
    const t = topicOf(name)
    const timer = setTimeout(() => {
      t.retrying.delete(timer)
      t.ready.push({ ...envelope, attempt: envelope.attempt + 1 })
      dispatch(name)
    }, delay)
    t.retrying.add(timer)
  }

  return {
    async publish(topic, job) {
      if (closed) throw new Unavailable('job queue closed')
      const body = JSON.stringify(job)
      topicOf(topic).ready.push({ id: randomUUID(), body, attempt: 1 })
      queueMicrotask(() => dispatch(topic))
    },

    async consume(topic, handler, options): Promise<Consumer> {
      if (closed) throw new Unavailable('job queue closed')
      const t = topicOf(topic)
      const state: ConsumerState = { handler, concurrency: Math.max(1, options?.concurrency ?? 1), running: new Set(), stopped: false }
      t.consumers.push(state)
      queueMicrotask(() => dispatch(topic))
      let stopping: Promise<void> | null = null
      const consumer = {
        stop(): Promise<void> {
          stopping ??= (async () => {
            state.stopped = true
            let timer: NodeJS.Timeout | undefined
            await Promise.race([
              Promise.all([...state.running].map((d) => d.done)),
              new Promise<void>((resolve) => (timer = setTimeout(resolve, stopTimeoutMs))),
            ])
            clearTimeout(timer)
            // Still running past the deadline: the consumer "dies"; its jobs go back first in line.
            const left = [...state.running]
            for (const d of left) d.abandoned = true
            state.running.clear()
            t.ready.unshift(...left.map((d) => ({ ...d.envelope, attempt: d.envelope.attempt + 1 })))
            t.consumers = t.consumers.filter((c) => c !== state)
            consumers.delete(consumer)
            if (left.length > 0) log.warn({ topic, jobs: left.length }, 'consumer stopped with jobs running; they were requeued')
            dispatch(topic)
          })()
          return stopping
        },
      }
      consumers.add(consumer)
      return consumer
    },

    async depths(names): Promise<QueueDepth[]> {
      return names.map((name) => {
        const t = topicOf(name)
        const active = t.consumers.filter((c) => !c.stopped)
        return {
          queue: name,
          ready: t.ready.length,
          unacked: t.consumers.reduce((n, c) => n + c.running.size, 0),
          retrying: t.retrying.size,
          dead: t.dead.length,
          consumers: active.length,
        }
      })
    },

    async status(): Promise<DependencyStatus> {
      return { name: 'queue', kind: 'embedded', ok: !closed, detail: { topics: [...topics.keys()] } }
    },

    async close() {
      if (closed) return
      closed = true
      await Promise.all([...consumers].map((c) => c.stop()))
      for (const t of topics.values()) for (const timer of t.retrying) clearTimeout(timer)
    },
  }
}
