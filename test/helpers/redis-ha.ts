// The Redis tier of the roadmap for a test: scripts/redis-ha.sh starts a
// master, two replicas and three Sentinels on spare loopback ports in a
// directory of the test's own; this wraps it (which process is the master,
// kill one by pid, restart one as a replica, stop everything it started).
import { execFile } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { parseEnvFile, startScriptTopology } from './ha-script.ts'
import { ROOT } from './mayfly-process.ts'

const run = promisify(execFile)
const SCRIPT = join(ROOT, 'scripts', 'redis-ha.sh')

export type RedisName = 'redis-1' | 'redis-2' | 'redis-3'
export const REDIS_NAMES: RedisName[] = ['redis-1', 'redis-2', 'redis-3']

export interface RedisHa {
  dir: string
  masterName: string
  /** MAYFLY_REDIS_SENTINELS and MAYFLY_REDIS_MASTER_NAME, for every Mayfly process */
  env: Record<string, string>
  sentinelPorts: number[]
  portOf(name: RedisName): number
  nameOf(port: number): RedisName
  /** the master as the Sentinels name it (the first that answers) */
  master(): Promise<{ name: RedisName; port: number }>
  /** sends a signal to the process by its pid file */
  signal(name: RedisName, signal: NodeJS.Signals): Promise<void>
  /** starts a stopped node again as a replica of the current master (redis-ha.sh restart) */
  restart(name: RedisName): Promise<void>
  /** kill -9 of every Redis and Sentinel process of the topology */
  killEverything(): Promise<void>
  /** starts the whole topology again on the same ports, once every process is down (redis-ha.sh start) */
  startAgain(): Promise<void>
  /** a direct client of one node, closed by stop() */
  direct(name: RedisName): Redis
  /** scripts/redis-ha.sh status */
  status(): Promise<string>
  stop(): Promise<void>
}

export async function startRedisHa(): Promise<RedisHa> {
  const { dir, topology } = await startScriptTopology(SCRIPT, 'mayfly-redis-ha-', 60_000)
  const env = parseEnvFile(await readFile(join(dir, 'mayfly.env'), 'utf8'))
  const ports: Record<RedisName, number> = {
    'redis-1': Number(topology.REDIS_1_PORT),
    'redis-2': Number(topology.REDIS_2_PORT),
    'redis-3': Number(topology.REDIS_3_PORT),
  }
  const sentinelPorts = [1, 2, 3].map((n) => Number(topology[`SENTINEL_${n}_PORT`]))
  const masterName = topology.MASTER_NAME ?? 'mayfly'
  const clients: Redis[] = []
  const quick = (port: number) => {
    const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 100, connectTimeout: 500, commandTimeout: 500, disconnectTimeout: 100 })
    c.on('error', () => {})
    clients.push(c)
    return c
  }
  const sentinels = sentinelPorts.map(quick)
  const nameOf = (port: number): RedisName => {
    const name = REDIS_NAMES.find((n) => ports[n] === port)
    if (name === undefined) throw new Error(`no node of this topology listens on ${port}`)
    return name
  }
  const pidOf = async (name: string) => Number((await readFile(join(dir, `${name}.pid`), 'utf8')).trim())

  return {
    dir,
    masterName,
    env,
    sentinelPorts,
    portOf: (name) => ports[name],
    nameOf,
    async master() {
      for (const s of sentinels) {
        try {
          if (s.status === 'wait') await s.connect()
          const [, port] = (await s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as [string, string]
          return { name: nameOf(Number(port)), port: Number(port) }
        } catch {
          // the next Sentinel
        }
      }
      throw new Error('no Sentinel answered')
    },
    async signal(name, signal) {
      process.kill(await pidOf(name), signal)
    },
    async restart(name) {
      await run('sh', [SCRIPT, 'restart', dir, name], { timeout: 30_000 })
    },
    async killEverything() {
      for (const name of [...REDIS_NAMES, 'sentinel-1', 'sentinel-2', 'sentinel-3']) {
        const pid = await pidOf(name)
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone already
        }
      }
    },
    async startAgain() {
      await run('sh', [SCRIPT, 'start', dir], { timeout: 60_000 })
    },
    direct: (name) => quick(ports[name]),
    async status() {
      return (await run('sh', [SCRIPT, 'status', dir])).stdout
    },
    async stop() {
      for (const c of clients) c.disconnect()
      // a frozen process cannot end: let it run so that stop's TERM reaches it
      for (const name of REDIS_NAMES) await pidOf(name).then((pid) => process.kill(pid, 'SIGCONT')).catch(() => undefined)
      await run('sh', [SCRIPT, 'stop', dir], { timeout: 30_000 })
      await rm(dir, { recursive: true, force: true })
    },
  }
}
