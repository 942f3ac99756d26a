// A Mayfly cluster on the Redis topology of scripts/redis-ha.sh with two
// gateways: the cluster's own (in this process) and a `mayfly gateway`
// process with connections of its own. The Redis fault tests share it.
import { startCluster, type Cluster } from './cluster.ts'
import { getJson } from './http.ts'
import { freePorts, spawnMayfly, type MayflyProcess } from './mayfly-process.ts'
import { startRedisHa, type RedisHa } from './redis-ha.ts'
import { waitFor } from './wait.ts'

export interface SentinelCluster {
  ha: RedisHa
  cluster: Cluster
  second: MayflyProcess
  secondUrl: string
  /** both gateways' urls, the cluster's first */
  gateways: string[]
  /** what a gateway's /api/cluster says of the cache */
  cacheOf(base: string): Promise<{ ok: boolean; detail: Record<string, unknown> }>
  /** runs on close(), newest first (loads, more processes) */
  onClose(cleanup: () => Promise<unknown>): void
  close(): Promise<void>
}

export async function startSentinelCluster(options: { worker: boolean }): Promise<SentinelCluster> {
  const cleanups: (() => Promise<unknown>)[] = []
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
  }
  try {
    const ha = await startRedisHa()
    cleanups.push(() => ha.stop())
    const cluster = await startCluster({ mode: 'real', worker: options.worker, env: { ...ha.env, MAYFLY_CACHE_TTL_SECONDS: '60' } })
    cleanups.push(() => cluster.close())
    const [port] = await freePorts(1)
    const second = spawnMayfly(['gateway'], { ...cluster.env, MAYFLY_HOST: '127.0.0.1', MAYFLY_PORT: String(port) })
    cleanups.push(() => second.kill('SIGTERM'))
    const secondUrl = `http://127.0.0.1:${port}`
    await waitFor('the second gateway ready', async () => (await fetch(`${secondUrl}/ready`).catch(() => null))?.status === 200, 30_000)
    return {
      ha,
      cluster,
      second,
      secondUrl,
      gateways: [cluster.url, secondUrl],
      async cacheOf(base) {
        const { body } = await getJson(`${base}/api/cluster`, { headers: { authorization: `Bearer ${cluster.secret}` } })
        return body.cache as { ok: boolean; detail: Record<string, unknown> }
      },
      onClose: (cleanup) => void cleanups.push(cleanup),
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}
