// JobQueue contract, run against the embedded queue and RabbitMQ on
// 127.0.0.1:5672 (each test in its own namespace; its queues are deleted).
import { test, describe } from 'node:test'
import { deleteTopicQueues } from '../helpers/rabbit.ts'
import { waitFor } from '../helpers/wait.ts'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { connect } from 'amqplib'
import { createLogger } from '../../src/log.ts'
import type { Consumer, JobQueue } from '../../src/ports.ts'
import { PermanentJobError, Unavailable } from '../../src/core/errors.ts'
import { createEmbeddedQueue } from '../../src/adapters/embedded/queue.ts'
import { createRabbitQueue } from '../../src/adapters/rabbitmq/queue.ts'

const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672'
const silent = createLogger('silent')
const TOPIC = 'jobs'

interface Policy {
  maxAttempts: number
  retryDelayMs: number
}

interface Fixture {
  queue: JobQueue
  /** A consumer on a queue client that can die: RabbitMQ, another connection closed abruptly; embedded, a consumer stopped past its deadline. */
  victim(): Promise<{ queue: JobQueue; kill(consumer: Consumer): Promise<void> }>
}

const STOP_TIMEOUT_MS = 100

const adapters: { name: string; make(ns: string, policy: Policy): Fixture; cleanup(ns: string, policy: Policy): Promise<void> }[] = [
  {
    name: 'embedded',
    make(_ns, policy) {
      const queue = createEmbeddedQueue({ ...policy, stopTimeoutMs: STOP_TIMEOUT_MS, log: silent })
      return { queue, victim: async () => ({ queue, kill: (c) => c.stop() }) }
    },
    cleanup: async () => {},
  },
  {
    name: 'rabbitmq',
    make(ns, policy) {
      const make = () => createRabbitQueue({ url: AMQP_URL, namespace: ns, ...policy, stopTimeoutMs: STOP_TIMEOUT_MS, reconnectDelayMs: 50, log: silent })
      const queue = make()
      return {
        queue,
        async victim() {
          const victim = make()
          return { queue: victim, kill: () => victim.close() }
        },
      }
    },
    cleanup: (ns, policy) => deleteTopicQueues(AMQP_URL, ns, TOPIC, policy),
  },
]

/** the checks here are in-process and cheap: a fast poll sees a job start well before it ends */
const POLL_MS = 10

type T = { after: (fn: () => Promise<void>) => void }

for (const a of adapters) {
  describe(`queue contract: ${a.name}`, () => {
    const setup = (t: T, policy: Policy = { maxAttempts: 3, retryDelayMs: 20 }) => {
      const ns = `t-${randomUUID().slice(0, 8)}`
      const fx = a.make(ns, policy)
      const closers: (() => Promise<void>)[] = []
      t.after(async () => {
        for (const close of closers) await close()
        await fx.queue.close()
        await a.cleanup(ns, policy)
      })
      return {
        ...fx,
        async victim() {
          const v = await fx.victim()
          closers.push(() => v.queue.close())
          return v
        },
      }
    }

    test('published jobs are consumed once each, on attempt 1', async (t) => {
      const { queue } = setup(t)
      const seen: { n: unknown; attempt: number }[] = []
      const consumer = await queue.consume(TOPIC, async (job, ctx) => {
        seen.push({ n: job.n, attempt: ctx.attempt })
      })
      for (let n = 0; n < 5; n++) await queue.publish(TOPIC, { n, nested: { ok: true } })
      await waitFor('the 5 jobs consumed', () => seen.length === 5, 5000, POLL_MS)
      assert.deepEqual(seen.map((s) => s.n).sort(), [0, 1, 2, 3, 4])
      assert.ok(seen.every((s) => s.attempt === 1))
      await consumer.stop()
      const [d] = await queue.depths([TOPIC])
      assert.deepEqual({ ready: d!.ready, unacked: d!.unacked, retrying: d!.retrying, dead: d!.dead }, { ready: 0, unacked: 0, retrying: 0, dead: 0 })
    })

    test('a failed job is retried after the delay and succeeds on attempt 2', async (t) => {
      const { queue } = setup(t, { maxAttempts: 3, retryDelayMs: 100 })
      const attempts: { attempt: number; at: number }[] = []
      await queue.consume(TOPIC, async (_job, ctx) => {
        attempts.push({ attempt: ctx.attempt, at: Date.now() })
        if (ctx.attempt === 1) throw new Error('transient')
      })
      await queue.publish(TOPIC, { id: 'x' })
      await waitFor('the second attempt', () => attempts.length === 2, 5000, POLL_MS)
      assert.deepEqual(attempts.map((x) => x.attempt), [1, 2])
      assert.ok(attempts[1]!.at - attempts[0]!.at >= 90, `retried after ${attempts[1]!.at - attempts[0]!.at} ms`)
      await waitFor('no job unacked', async () => (await queue.depths([TOPIC]))[0]!.unacked === 0, 5000, POLL_MS)
      const [d] = await queue.depths([TOPIC])
      assert.equal(d!.dead, 0)
      assert.equal(d!.retrying, 0)
    })

    test('a poison job is dead-lettered after maxAttempts', async (t) => {
      const { queue } = setup(t, { maxAttempts: 3, retryDelayMs: 20 })
      const attempts: number[] = []
      await queue.consume(TOPIC, async (_job, ctx) => {
        attempts.push(ctx.attempt)
        throw new Error('always fails')
      })
      await queue.publish(TOPIC, { id: 'poison' })
      await waitFor('the job in the dead-letter queue', async () => (await queue.depths([TOPIC]))[0]!.dead === 1, 5000, POLL_MS)
      assert.deepEqual(attempts, [1, 2, 3])
      const [d] = await queue.depths([TOPIC])
      assert.equal(d!.ready, 0)
      assert.equal(d!.retrying, 0)
    })

    test('PermanentJobError dead-letters at once', async (t) => {
      const { queue } = setup(t)
      const attempts: number[] = []
      await queue.consume(TOPIC, async (_job, ctx) => {
        attempts.push(ctx.attempt)
        throw new PermanentJobError('corrupt input')
      })
      await queue.publish(TOPIC, { id: 'bad' })
      await waitFor('the job in the dead-letter queue', async () => (await queue.depths([TOPIC]))[0]!.dead === 1, 5000, POLL_MS)
      assert.deepEqual(attempts, [1])
    })

    test('concurrency is respected', async (t) => {
      const { queue } = setup(t)
      let running = 0
      let peak = 0
      let done = 0
      await queue.consume(
        TOPIC,
        async () => {
          running++
          peak = Math.max(peak, running)
          await new Promise((r) => setTimeout(r, 30))
          running--
          done++
        },
        { concurrency: 2 },
      )
      for (let i = 0; i < 6; i++) await queue.publish(TOPIC, { i })
      await waitFor('the 6 jobs done', () => done === 6, 5000, POLL_MS)
      assert.equal(peak, 2)
    })

    test('stop() waits for running jobs, which are then not delivered again', async (t) => {
      const { queue } = setup(t)
      const seen: number[] = []
      let started = false
      const consumer = await queue.consume(TOPIC, async (_job, ctx) => {
        started = true
        await new Promise((r) => setTimeout(r, 40))
        seen.push(ctx.attempt)
      })
      await queue.publish(TOPIC, { id: 1 })
      await waitFor('the job started', () => started, 5000, POLL_MS)
      await consumer.stop()
      assert.deepEqual(seen, [1])
      const [d] = await queue.depths([TOPIC])
      assert.equal(d!.ready, 0)
      assert.equal(d!.consumers, 0)
    })

    test('a job in flight when its consumer dies is delivered again', async (t) => {
      const { queue, victim } = setup(t)
      const v = await victim()
      let release!: () => void
      const hang = new Promise<void>((r) => (release = r))
      t.after(async () => release())
      let victimGot: number | null = null
      const dying = await v.queue.consume(TOPIC, async (_job, ctx) => {
        victimGot = ctx.attempt
        await hang
      })
      await queue.publish(TOPIC, { id: 'in-flight' })
      await waitFor('the job delivered to the consumer that dies', () => victimGot !== null, 5000, POLL_MS)
      await v.kill(dying)
      const got: { id: unknown; attempt: number }[] = []
      await queue.consume(TOPIC, async (job, ctx) => {
        got.push({ id: job.id, attempt: ctx.attempt })
      })
      await waitFor('the job delivered', () => got.length === 1, 5000, POLL_MS)
      assert.equal(victimGot, 1)
      assert.deepEqual(got, [{ id: 'in-flight', attempt: 2 }])
    })

    test('a job that kills its consumer every time is dead-lettered after maxAttempts deliveries', async (t) => {
      const { queue, victim } = setup(t, { maxAttempts: 2, retryDelayMs: 20 })
      const hang = new Promise<void>(() => {})
      await queue.publish(TOPIC, { id: 'kills-workers' })
      const seen: number[] = []
      for (let i = 0; i < 2; i++) {
        const v = await victim()
        const c = await v.queue.consume(TOPIC, async (_job, ctx) => {
          seen.push(ctx.attempt)
          await hang
        })
        await waitFor(`delivery ${i + 1} of the job`, () => seen.length === i + 1, 5000, POLL_MS)
        await v.kill(c)
      }
      assert.deepEqual(seen, [1, 2])
      let ran = false
      await queue.consume(TOPIC, async () => {
        ran = true
      })
      await waitFor('the job in the dead-letter queue', async () => (await queue.depths([TOPIC]))[0]!.dead === 1, 5000, POLL_MS)
      assert.equal(ran, false, 'a third delivery must not run')
    })

    test('depths report ready, retrying, dead and consumers', async (t) => {
      const { queue } = setup(t, { maxAttempts: 2, retryDelayMs: 60_000 })
      await queue.publish(TOPIC, { id: 1 })
      await queue.publish(TOPIC, { id: 2 })
      await waitFor('2 jobs ready', async () => (await queue.depths([TOPIC]))[0]!.ready === 2, 5000, POLL_MS)
      let first = true
      const consumer = await queue.consume(TOPIC, async () => {
        if (first) {
          first = false
          throw new Error('to the retry queue')
        }
        throw new PermanentJobError('to the dead-letter queue')
      })
      await waitFor('one job retrying and one dead', async () => {
        const [d] = await queue.depths([TOPIC])
        return d!.retrying === 1 && d!.dead === 1
      }, 5000, POLL_MS)
      const [d] = await queue.depths([TOPIC])
      assert.equal(d!.ready, 0)
      assert.equal(d!.consumers, 1)
      await consumer.stop()
      assert.equal((await queue.depths([TOPIC]))[0]!.consumers, 0)
    })
  })
}

/** Closes, from the broker's side, every connection whose client-provided name starts with `prefix`; returns how many. */
async function dropConnections(prefix: string): Promise<number> {
  const run = promisify(execFile)
  // plain output: `<pid>\t[{"connection_name","name"},…]` per line (the JSON formatter's pids are not accepted back)
  const { stdout } = await run('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '--quiet', '--no-table-headers'])
  const pids = stdout
    .split('\n')
    .filter((line) => line.includes(`{"connection_name","${prefix}`))
    .map((line) => line.split('\t')[0]!)
  await Promise.all(pids.map((pid) => run('rabbitmqctl', ['close_connection', pid, 'mayfly contract test'])))
  return pids.length
}

describe('queue: rabbitmq only', () => {
  test('after the broker drops its connections, consumers resume and publish works', async (t) => {
    const ns = `t-${randomUUID().slice(0, 8)}`
    const policy = { maxAttempts: 3, retryDelayMs: 20 }
    const queue = createRabbitQueue({ url: AMQP_URL, namespace: ns, ...policy, reconnectDelayMs: 50, log: silent })
    t.after(async () => {
      await queue.close()
      await adapters[1]!.cleanup(ns, policy)
    })
    const got: unknown[] = []
    await queue.consume(TOPIC, async (job) => {
      got.push(job.n)
    })
    await queue.publish(TOPIC, { n: 1 })
    await waitFor('the job delivered', () => got.length === 1, 5000, POLL_MS)
    assert.equal(await dropConnections(`mayfly-${ns}-`), 2)
    await queue.publish(TOPIC, { n: 2 })
    await waitFor('the consumer resumed with the second job', () => got.length === 2, 5000, POLL_MS)
    assert.deepEqual(got, [1, 2])
    await waitFor('one consumer on the queue', async () => (await queue.depths([TOPIC]))[0]!.consumers === 1, 5000, POLL_MS)
  })

  test('publish to an unreachable broker throws Unavailable within publishTimeoutMs', async (t) => {
    const server = createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const address = server.address()
    await new Promise((r) => server.close(r))
    assert.ok(address && typeof address === 'object')
    const queue = createRabbitQueue({
      url: `amqp://guest:guest@127.0.0.1:${address.port}`,
      namespace: 't-down',
      maxAttempts: 3,
      retryDelayMs: 20,
      publishTimeoutMs: 300,
      reconnectDelayMs: 50,
      log: silent,
    })
    t.after(() => queue.close())
    const started = Date.now()
    await assert.rejects(queue.publish(TOPIC, { id: 1 }), Unavailable)
    assert.ok(Date.now() - started < 1000)
    assert.equal((await queue.status()).ok, false)
    await assert.rejects(queue.depths([TOPIC]), Unavailable)
  })

  test('publish re-declares a queue deleted behind its back instead of losing the job', async (t) => {
    const ns = `t-${randomUUID().slice(0, 8)}`
    const policy = { maxAttempts: 3, retryDelayMs: 20 }
    const queue = createRabbitQueue({ url: AMQP_URL, namespace: ns, ...policy, reconnectDelayMs: 50, log: silent })
    const conn = await connect(AMQP_URL)
    t.after(async () => {
      await conn.close()
      await queue.close()
      await adapters[1]!.cleanup(ns, policy)
    })
    await queue.publish(TOPIC, { n: 1 })
    const ch = await conn.createChannel()
    await ch.deleteQueue(`${ns}.${TOPIC}`)
    await queue.publish(TOPIC, { n: 2 })
    assert.equal((await ch.checkQueue(`${ns}.${TOPIC}`)).messageCount, 1)
  })

  test('a consumer process killed with SIGKILL mid-job: the job is delivered again', async (t) => {
    const ns = `t-${randomUUID().slice(0, 8)}`
    const policy = { maxAttempts: 3, retryDelayMs: 20 }
    const queue = createRabbitQueue({ url: AMQP_URL, namespace: ns, ...policy, log: silent })
    t.after(async () => {
      await queue.close()
      await adapters[1]!.cleanup(ns, policy)
    })
    const script = `
      import { createRabbitQueue } from ${JSON.stringify(new URL('../../src/adapters/rabbitmq/queue.ts', import.meta.url).href)}
      import { createLogger } from ${JSON.stringify(new URL('../../src/log.ts', import.meta.url).href)}
      const q = createRabbitQueue({ url: ${JSON.stringify(AMQP_URL)}, namespace: ${JSON.stringify(ns)}, maxAttempts: 3, retryDelayMs: 20, log: createLogger('silent') })
      await q.consume(${JSON.stringify(TOPIC)}, async (job, ctx) => {
        process.stdout.write(JSON.stringify({ id: job.id, attempt: ctx.attempt }) + '\\n')
        await new Promise(() => {})
      })
      process.stdout.write('ready\\n')
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    })
    const lines: string[] = []
    createInterface({ input: child.stdout }).on('line', (l) => lines.push(l))
    await waitFor('the child consumer ready', () => lines.includes('ready'), 10_000, POLL_MS)
    await queue.publish(TOPIC, { id: 'crash' })
    await waitFor('the child to get the job', () => lines.length === 2, 5000, POLL_MS)
    assert.deepEqual(JSON.parse(lines[1]!), { id: 'crash', attempt: 1 })
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGKILL')
    await exited
    const got: { id: unknown; attempt: number }[] = []
    await queue.consume(TOPIC, async (job, ctx) => {
      got.push({ id: job.id, attempt: ctx.attempt })
    })
    await waitFor('the job delivered', () => got.length === 1, 5000, POLL_MS)
    assert.deepEqual(got, [{ id: 'crash', attempt: 2 }])
  })
})
