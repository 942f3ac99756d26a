// The RabbitMQ tier of the roadmap for a test: scripts/rabbitmq-ha.sh starts
// three brokers of one cluster (their own epmd, spare loopback ports) in a
// directory of the test's own; this wraps it: the brokers' urls, which
// broker leads a quorum queue, a signal to one broker by pid, a killed broker
// started again, and stop() for everything it started.
import { execFile } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parseEnvFile, startScriptTopology } from './ha-script.ts'
import { ROOT } from './mayfly-process.ts'

const run = promisify(execFile)
const SCRIPT = join(ROOT, 'scripts', 'rabbitmq-ha.sh')

export type BrokerNumber = 1 | 2 | 3
export const BROKERS: BrokerNumber[] = [1, 2, 3]

export interface BrokerStatus {
  number: BrokerNumber
  name: string
  port: number
  pid: number | null
  alive: boolean
  running_in_cluster: boolean
}

export interface RabbitHa {
  dir: string
  /** MAYFLY_AMQP_URL (the three brokers, comma-separated), for every Mayfly process */
  env: Record<string, string>
  /** each broker's amqp:// url, broker 1 first */
  urls: string[]
  portOf(n: BrokerNumber): number
  /** which broker a url (or port) belongs to */
  numberOf(urlOrPort: string | number): BrokerNumber
  /** the broker that leads quorum queue `queue` (rabbitmq-ha.sh leader: Ra's own view) */
  leaderOf(queue: string): Promise<BrokerNumber>
  /** rabbitmq-ha.sh status */
  status(): Promise<BrokerStatus[]>
  /** the broker's beam pid (its pid file) */
  pidOf(n: BrokerNumber): Promise<number>
  /** sends a signal to the broker's beam by its pid file */
  signal(n: BrokerNumber, signal: NodeJS.Signals): Promise<void>
  /** starts a killed broker again; resolves once it runs in the cluster (rabbitmq-ha.sh start-member) */
  startMember(n: BrokerNumber): Promise<void>
  stop(): Promise<void>
}

export async function startRabbitHa(): Promise<RabbitHa> {
  const { dir, topology } = await startScriptTopology(SCRIPT, 'mayfly-rabbitmq-ha-', 150_000)
  const env = parseEnvFile(await readFile(join(dir, 'mayfly.env'), 'utf8'))
  const urls = (env.MAYFLY_AMQP_URL ?? '').split(',')
  const ports: Record<BrokerNumber, number> = {
    1: Number(topology.AMQP_1_PORT),
    2: Number(topology.AMQP_2_PORT),
    3: Number(topology.AMQP_3_PORT),
  }
  const numberOf = (urlOrPort: string | number): BrokerNumber => {
    const port = typeof urlOrPort === 'number' ? urlOrPort : Number(new URL(urlOrPort).port)
    const n = BROKERS.find((b) => ports[b] === port)
    if (n === undefined) throw new Error(`no broker of this topology listens on ${port}`)
    return n
  }
  const pidOf = async (n: BrokerNumber) => Number((await readFile(join(dir, `rabbit-${n}.pid`), 'utf8')).trim())

  return {
    dir,
    env,
    urls,
    portOf: (n) => ports[n],
    numberOf,
    async leaderOf(queue) {
      const { stdout } = await run('sh', [SCRIPT, 'leader', dir, queue], { timeout: 30_000 })
      const n = Number(stdout.trim().split(' ')[0])
      if (n !== 1 && n !== 2 && n !== 3) throw new Error(`rabbitmq-ha.sh leader said: ${stdout}`)
      return n
    },
    async status() {
      const { stdout } = await run('sh', [SCRIPT, 'status', dir], { timeout: 30_000 })
      return (JSON.parse(stdout) as { brokers: BrokerStatus[] }).brokers
    },
    pidOf,
    async signal(n, signal) {
      process.kill(await pidOf(n), signal)
    },
    async startMember(n) {
      await run('sh', [SCRIPT, 'start-member', dir, String(n)], { timeout: 90_000 })
    },
    async stop() {
      await run('sh', [SCRIPT, 'stop', dir], { timeout: 60_000 }).catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
    },
  }
}
