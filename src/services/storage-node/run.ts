// `mayfly storage-node`: open the data directory, listen, announce, heartbeat.
import { resolve } from 'node:path'
import { Agent } from 'undici'
import type { Config } from '../../config.ts'
import type { Logger } from '../../log.ts'
import { buildStorageNode, describeNode, type NodeIdentity } from './app.ts'
import { loadNodeId, openBlobFiles } from './blob-files.ts'
import { openFences } from './fences.ts'
import { startGatewayBeats } from './gateway-beats.ts'
import { startScrubber } from './scrub.ts'
import { createSourceNodes } from './source-nodes.ts'
import { VERSION } from '../../version.ts'

export const DEFAULT_STORAGE_NODE_PORT = 8001
/** in-flight requests get this long to finish on close before their connections are cut */
const CLOSE_GRACE_MS = 5000

export interface RunningStorageNode {
  id: string
  url: string
  close(): Promise<void>
}

/** The url peers can use when MAYFLY_ADVERTISE_URL is not set. */
function localUrl(host: string, port: number): string {
  const wildcard = host === '0.0.0.0' || host === '::' || host === 'localhost'
  const h = wildcard ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host
  return `http://${h}:${port}`
}

export async function runStorageNode(config: Config, rootLog: Logger): Promise<RunningStorageNode> {
  const log = rootLog.child({ svc: 'storage-node' })
  const secret = config.MAYFLY_CLUSTER_SECRET
  if (secret === undefined) throw new Error('MAYFLY_CLUSTER_SECRET is required to run a storage node')
  const dataDir = resolve(config.MAYFLY_DATA_DIR)
  const files = await openBlobFiles(dataDir, log)
  const identity: NodeIdentity = {
    id: await loadNodeId(dataDir),
    zone: config.MAYFLY_ZONE,
    url: '',
    version: VERSION,
  }
  const timeoutMs = config.MAYFLY_NODE_TIMEOUT_MS
  const dispatcher = new Agent({ connections: 64, pipelining: 1, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect: { timeout: timeoutMs } })
  const app = buildStorageNode({
    log,
    files,
    fences: await openFences(dataDir),
    identity,
    secret,
    clientTimeoutMs: config.MAYFLY_CLIENT_TIMEOUT_MS,
    peerTimeoutMs: timeoutMs,
    dispatcher,
    sources: createSourceNodes({ controlUrls: config.MAYFLY_CONTROL_URL ?? [], secret, dispatcher, timeoutMs }),
  })
  await app.listen({ host: config.MAYFLY_HOST, port: config.MAYFLY_PORT ?? DEFAULT_STORAGE_NODE_PORT })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : DEFAULT_STORAGE_NODE_PORT
  identity.url = config.MAYFLY_ADVERTISE_URL?.replace(/\/+$/, '') ?? localUrl(config.MAYFLY_HOST, port)
  log.info({ id: identity.id, zone: identity.zone, url: identity.url, dataDir }, 'storage node started')

  const scrubber = startScrubber({ files, intervalMs: config.MAYFLY_SCRUB_INTERVAL_SECONDS * 1000, log })
  // one heartbeat per control url, and one to each gateway they name: each gateway hears every node itself
  const controlUrls = config.MAYFLY_CONTROL_URL ?? []
  const heartbeats = startGatewayBeats({
    controlUrls,
    secret,
    intervalMs: config.MAYFLY_HEARTBEAT_INTERVAL_MS,
    timeoutMs,
    dispatcher,
    describe: () => describeNode(files, identity),
    log,
  })
  if (controlUrls.length === 0) {
    log.info('no MAYFLY_CONTROL_URL: not announcing to a control plane, and no node-to-node copy can be made to this node')
  }

  let closing: Promise<void> | null = null
  return {
    id: identity.id,
    url: identity.url,
    close() {
      closing ??= (async () => {
        await heartbeats.stop()
        await scrubber.stop()
        const cut = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS)
        try {
          await app.close()
        } finally {
          clearTimeout(cut)
        }
        await dispatcher.close()
        log.info('storage node stopped')
      })()
      return closing
    },
  }
}
