// `mayfly up`: a whole local cluster in one command (DESIGN §2). Three
// storage nodes run as child processes (each its own data directory and zone,
// so one can be killed); the gateway, the worker and the replication manager
// share this process and the infrastructure chosen by wiring.ts (embedded
// unless urls are set).
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startReplicationManager } from '../services/replicator/manager.ts'
import { startWorker } from '../services/worker/worker.ts'
import { createInfrastructure } from '../wiring.ts'
import type { Logger } from '../log.ts'
import { closeOnSignal, configOrExit, rootLogger } from './lifecycle.ts'
import { replicatorOptions, startGateway, stopGateway, workerOptions } from './services.ts'

const ZONES = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i']
const MAIN = fileURLToPath(new URL('../main.ts', import.meta.url))

export interface UpOptions {
  dataDir?: string
  port?: string
  nodePorts?: string
}

export async function upCommand(options: UpOptions): Promise<void> {
  const config = configOrExit({ MAYFLY_DATA_DIR: options.dataDir, MAYFLY_PORT: options.port })
  const log = rootLogger(config, 'up')
  const dataDir = resolve(config.MAYFLY_DATA_DIR)
  const port = config.MAYFLY_PORT ?? 5000
  const nodePorts = parsePorts(options.nodePorts ?? '8001,8002,8003')
  await mkdir(dataDir, { recursive: true })
  const secret = config.MAYFLY_CLUSTER_SECRET ?? (await clusterSecret(dataDir))
  const runConfig = { ...config, MAYFLY_DATA_DIR: dataDir, MAYFLY_CLUSTER_SECRET: secret, MAYFLY_PUBLIC_STATUS: config.MAYFLY_PUBLIC_STATUS ?? true }

  const infra = await createInfrastructure(runConfig, log, secret)
  const gateway = await startGateway(runConfig, log.child({ svc: 'gateway' }), infra, secret, port)
  const controlUrl = `http://127.0.0.1:${port}`
  const children = nodePorts.map((nodePort, i) =>
    spawnNode(log, {
      ...process.env,
      MAYFLY_DATA_DIR: join(dataDir, `node${i + 1}`),
      MAYFLY_PORT: String(nodePort),
      MAYFLY_HOST: '127.0.0.1',
      MAYFLY_ZONE: ZONES[i % ZONES.length],
      MAYFLY_CLUSTER_SECRET: secret,
      MAYFLY_CONTROL_URL: controlUrl,
      MAYFLY_ADVERTISE_URL: `http://127.0.0.1:${nodePort}`,
    }),
  )
  const worker = await startWorker(workerOptions(runConfig, log.child({ svc: 'worker' }), infra))
  const replicator = startReplicationManager(replicatorOptions(runConfig, log.child({ svc: 'replicator' }), infra))
  closeOnSignal(log, {
    // stop accepting first, then what makes work, then the storage nodes the
    // work needs; the store closes last (issue 7, bug 8)
    steps: [() => stopGateway(gateway), () => replicator.stop(), () => worker.stop(), () => stopChildren(children)],
    last: () => infra.close(),
  })

  await waitForNodes(infra, config.MAYFLY_WRITE_QUORUM, children.length)
  log.info({ url: `http://localhost:${port}`, dataDir, nodes: nodePorts }, `Mayfly is up: http://localhost:${port}`)
}

let stopping = false

function spawnNode(log: Logger, env: NodeJS.ProcessEnv): ChildProcess {
  // Its own process group: a terminal's Ctrl-C (SIGINT to the foreground
  // group) reaches only `up`, which stops the nodes after the gateway has
  // drained. The IPC channel is the node's lifeline: when this process ends,
  // even by SIGKILL, the channel closes and the node stops (storage-node command).
  const child = spawn(process.execPath, [MAIN, 'storage-node'], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true })
  child.channel?.unref()
  child.on('exit', (code, signal) => {
    if (stopping) return
    log.warn({ port: env.MAYFLY_PORT, code, signal }, 'a storage node exited; the cluster goes on with the others')
  })
  // however this process ends (a shutdown past its deadline too), no node outlives it
  process.once('exit', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  })
  return child
}

async function stopChildren(children: ChildProcess[]): Promise<void> {
  stopping = true
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done()
          child.once('exit', () => done())
          child.kill('SIGTERM')
        }),
    ),
  )
}

/** Waits until every node has announced itself (or at least the quorum, after 15 s). */
async function waitForNodes(infra: { nodes: { writable(): Promise<unknown[]> } }, quorum: number, expected: number) {
  const started = Date.now()
  for (;;) {
    const up = (await infra.nodes.writable().catch(() => [])).length
    const waited = Date.now() - started
    if (up >= expected || (up >= quorum && waited > 15_000) || waited > 60_000) return
    await new Promise((r) => setTimeout(r, 200))
  }
}

async function clusterSecret(dataDir: string): Promise<string> {
  const path = join(dataDir, 'cluster-secret')
  try {
    return (await readFile(path, 'utf8')).trim()
  } catch {
    const secret = randomBytes(32).toString('base64url')
    await writeFile(path, `${secret}\n`, { mode: 0o600, flag: 'wx' }).catch(() => {})
    return (await readFile(path, 'utf8')).trim()
  }
}

function parsePorts(list: string): number[] {
  const ports = list.split(',').map((p) => Number(p.trim()))
  if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
    process.stderr.write(`mayfly: --node-ports must be a comma-separated list of ports, got ${JSON.stringify(list)}\n`)
    process.exit(2)
  }
  return ports
}
