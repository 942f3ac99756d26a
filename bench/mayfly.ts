// Mayfly under test: `mayfly up` (gateway, worker and replication manager in
// one process, three storage nodes as its children (or more); replication factor 3, write quorum 2, the
// defaults) on free ports with its data in a temp directory. Mode 'real'
// points it at this machine's PostgreSQL (a fresh database, dropped after),
// Redis and RabbitMQ (a fresh namespace, its keys and queues removed after);
// mode 'embedded' uses the stand-ins.
import { randomUUID } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../src/config.ts'
import { VARIANT_TOPIC } from '../src/wiring.ts'
import { AMQP_URL, createTestDatabase, REDIS_URL } from '../test/helpers/cluster.ts'
import { deleteTopicQueues } from '../test/helpers/rabbit.ts'
import { deleteNamespaceKeys } from '../test/helpers/redis.ts'
import { createClient, expectStatus, readChecked } from './load.ts'
import { multipartBody } from './multipart.ts'
import { freePorts, hasExited, spawnLogged, stopChild, waitUntil, type Spawned } from './processes.ts'
import type { Payload, StoreTarget } from './target.ts'

export type Mode = 'real' | 'embedded'

export const REPO = fileURLToPath(new URL('..', import.meta.url))
const NODE = resolve(REPO, 'node_modules/.bin/node')
const MAIN = resolve(REPO, 'src/main.ts')

export interface UploadAnswer {
  id: string
  size: number
  sha256: string
}

export interface VariantInfo {
  name: string
  state: 'pending' | 'ready' | 'failed' | 'skipped'
}

export interface MayflyCluster {
  mode: Mode
  url: string
  /** pid of the `mayfly up` process, which hosts the gateway, the worker and the replication manager */
  pid: number
  /** the storage nodes' ports, zones a, b, c, … in order */
  nodePorts: number[]
  /** mode 'real': its PostgreSQL database, for measurements the API does not give */
  databaseUrl: string | null
  target: StoreTarget
  /** POST /api/upload of a ready-made multipart body (or stream with its length) */
  upload(contentType: string, body: Buffer | AsyncIterable<Buffer>, length: number): Promise<UploadAnswer>
  /** GET /api/files/:id → its variants */
  variants(id: string): Promise<VariantInfo[]>
  /** GET /api/download/:id, checked by length and sha256 */
  download(id: string, size: number, sha256: string): Promise<void>
  stop(): Promise<void>
}

export interface StartOptions {
  mode: Mode
  /** parent temp directory; the cluster's data goes in a fresh directory under it */
  root: string
  concurrency: number
  /** write V8 CPU profiles of the up process (and its storage nodes) here */
  cpuProfDir?: string
  /** storage nodes (default 3) */
  nodes?: number
  /** more MAYFLY_* settings */
  env?: Record<string, string>
}

export async function startMayfly(o: StartOptions): Promise<MayflyCluster> {
  const dir = join(o.root, `${o.mode}-${randomUUID().slice(0, 8)}`)
  await mkdir(dir, { recursive: true })
  const cleanups: (() => Promise<unknown>)[] = [() => rm(dir, { recursive: true, force: true })]
  const namespace = `bench-${randomUUID().slice(0, 8)}`
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MAYFLY_')))
  Object.assign(env, {
    MAYFLY_LOG_LEVEL: 'warn',
    MAYFLY_NAMESPACE: namespace,
    // the memory phase sends 1 GiB in one upload
    MAYFLY_MAX_UPLOAD_BYTES: String(4 * 1024 ** 3),
    // the load comes from one address: per-client limits would measure themselves
    MAYFLY_RATE_LIMIT_UPLOADS: '0',
    MAYFLY_RATE_LIMIT_DOWNLOADS: '0',
    ...o.env,
  })
  if (o.cpuProfDir !== undefined) {
    await mkdir(o.cpuProfDir, { recursive: true })
    env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${o.cpuProfDir}`.trim()
  }
  let proc: Spawned | null = null
  let databaseUrl: string | null = null
  const stopAll = async () => {
    if (proc !== null) await stopChild(proc)
    if (proc !== null) killStragglers(proc.pid)
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err: unknown) => console.error(`bench: cleanup failed: ${String(err)}`))
  }
  try {
    if (o.mode === 'real') {
      const db = await createTestDatabase()
      cleanups.push(() => db.drop())
      cleanups.push(() => deleteNamespaceKeys(REDIS_URL, namespace))
      // named as the RabbitMQ adapter names them for this namespace and the default retry policy
      const policy = loadConfig({})
      cleanups.push(() => deleteTopicQueues(AMQP_URL, namespace, VARIANT_TOPIC, { maxAttempts: policy.MAYFLY_JOB_MAX_ATTEMPTS, retryDelayMs: policy.MAYFLY_JOB_RETRY_DELAY_MS }))
      // the machine's services, unless the caller names others (the Redis phase does)
      Object.assign(env, { MAYFLY_DATABASE_URL: db.url, MAYFLY_REDIS_URL: REDIS_URL, MAYFLY_AMQP_URL: AMQP_URL, ...o.env })
      databaseUrl = db.url
    }
    const nodeCount = o.nodes ?? 3
    const [port, ...nodePorts] = await freePorts(1 + nodeCount)
    const url = `http://127.0.0.1:${port}`
    const spawned = spawnLogged(
      NODE,
      [MAIN, 'up', '--data-dir', join(dir, 'data'), '--port', String(port), '--node-ports', nodePorts.join(',')],
      { env, cwd: REPO, logPath: join(o.root, `${o.mode}-up-${port}.log`) },
    )
    proc = spawned
    await waitUntil(
      async () => {
        if (hasExited(spawned.child)) throw new Error('exited')
        return await isReady(url, nodeCount)
      },
      90_000,
      () => `mayfly up (${o.mode}) did not become ready with ${nodeCount} nodes up:\n${spawned.logTail()}`,
      200,
    )
    const client = createClient(o.concurrency)
    cleanups.unshift(() => client.close())
    const bodies = new Map<Payload, { contentType: string; body: Buffer }>()

    const upload = async (contentType: string, body: Buffer | AsyncIterable<Buffer>, length: number): Promise<UploadAnswer> => {
      const res = await client.request({
        origin: url,
        path: '/api/upload',
        method: 'POST',
        headers: { 'content-type': contentType, 'content-length': String(length) },
        body: Buffer.isBuffer(body) ? body : Readable.from(body, { objectMode: false }),
      })
      await expectStatus(res, [201], 'upload')
      return (await res.body.json()) as UploadAnswer
    }
    const download = async (id: string, size: number, sha256: string | null) => {
      const res = await client.request({ origin: url, path: `/api/download/${id}`, method: 'GET' })
      await expectStatus(res, [200], 'download')
      await readChecked(res.body, size, sha256)
    }
    const target: StoreTarget = {
      name: `mayfly-${o.mode}`,
      async upload(payload) {
        let form = bodies.get(payload)
        if (form === undefined) {
          form = multipartBody(payload.data, `${payload.label}.bin`, 'application/octet-stream')
          bodies.set(payload, form)
        }
        const answer = await upload(form.contentType, form.body, form.body.length)
        if (answer.size !== payload.size || answer.sha256 !== payload.sha256) {
          throw new Error(`upload answered size ${answer.size} sha256 ${answer.sha256}, expected ${payload.size} ${payload.sha256}`)
        }
        return answer.id
      },
      download: (id, payload, checkSha) => download(id, payload.size, checkSha ? payload.sha256 : null),
    }
    return {
      mode: o.mode,
      url,
      pid: spawned.pid,
      nodePorts: nodePorts as number[],
      databaseUrl,
      target,
      upload,
      download,
      async variants(id) {
        const res = await client.request({ origin: url, path: `/api/files/${id}`, method: 'GET' })
        await expectStatus(res, [200], 'file info')
        return ((await res.body.json()) as { variants: VariantInfo[] }).variants
      },
      stop: stopAll,
    }
  } catch (err) {
    await stopAll()
    throw err
  }
}

/** /ready answers 200 (metadata and the write quorum) and every node is up. */
async function isReady(url: string, nodes: number): Promise<boolean> {
  const ready = await fetch(`${url}/ready`)
  await ready.arrayBuffer()
  if (ready.status !== 200) return false
  const body = (await (await fetch(`${url}/api/nodes`)).json()) as { nodes: { state: string }[] }
  return body.nodes.filter((n) => n.state === 'up').length >= nodes
}

/** The up process exited; anything left in its process group (a storage node) is killed. */
function killStragglers(pgid: number): void {
  try {
    process.kill(-pgid, 0)
  } catch {
    return
  }
  try {
    process.kill(-pgid, 'SIGKILL')
  } catch {
    // gone meanwhile
  }
}
