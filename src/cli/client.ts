// Commands for people: upload and status against a gateway (download is in download.ts).
import { createReadStream, openAsBlob } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { SingleBar, Presets } from 'cli-progress'
import { FormData, request } from 'undici'
import { formatBytes } from '../core/bytes.ts'
import { authorization, findClusterSecret, keptBackMessage, maySend, refusedSecretMessage } from './cluster-secret.ts'

export interface ClientOptions {
  url: string
}

/** "90", "90s", "15m", "1h", "7d" → seconds */
export function parseDuration(text: string): number {
  const m = /^(\d+)\s*([smhd]?)$/.exec(text.trim())
  if (m === null) throw new Error(`not a duration: ${JSON.stringify(text)} (use e.g. 90, 15m, 1h, 7d)`)
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd']
  return Number(m[1]) * unit
}

export function progressBar(total: number, verb: string) {
  const bar = new SingleBar(
    { format: `${verb} [{bar}] {percentage}% | {done} of {size} | {speed}/s`, hideCursor: true, stream: process.stderr },
    Presets.shades_classic,
  )
  const started = Date.now()
  let done = 0
  bar.start(total, 0, { done: '0 B', size: formatBytes(total), speed: '0 B' })
  const counter = new Transform({
    transform(chunk: Buffer, _enc, callback) {
      done += chunk.length
      const seconds = Math.max(0.001, (Date.now() - started) / 1000)
      bar.update(done, { done: formatBytes(done), speed: formatBytes(Math.round(done / seconds)) })
      callback(null, chunk)
    },
  })
  return { counter, stop: () => bar.stop() }
}

export async function failure(res: { statusCode: number; body: { text(): Promise<string> } }): Promise<never> {
  const text = await res.body.text()
  let message = text
  try {
    const json = JSON.parse(text) as { error?: string; message?: string }
    message = `${json.error}: ${json.message}`
  } catch {
    // not JSON: show it as it is
  }
  throw new Error(`the gateway answered ${res.statusCode}: ${message}`)
}

export async function uploadCommand(
  file: string,
  options: ClientOptions & { maxDownloads?: string; expiresIn?: string; password?: string },
): Promise<void> {
  const { size } = await stat(file)
  const form = new FormData()
  if (options.maxDownloads !== undefined) form.set('max_downloads', options.maxDownloads)
  if (options.expiresIn !== undefined) form.set('expires_in', String(parseDuration(options.expiresIn)))
  if (options.password !== undefined) form.set('password', options.password)
  const progress = progressBar(size, 'uploading')
  const source = createReadStream(file).pipe(progress.counter)
  // undici's FormData takes only a real Blob or File (a Blob-like object is
  // refused). A File subclass given without a filename argument is kept as it
  // is and read through its stream(): the file's size and name, its bytes
  // streamed from disk through the progress counter, never read into memory.
  const onDisk = await openAsBlob(file)
  class StreamedFile extends File {
    override stream() {
      return Readable.toWeb(source) as ReturnType<File['stream']>
    }
  }
  form.set('file', new StreamedFile([onDisk], basename(file)))
  try {
    const res = await request(`${options.url}/api/upload`, { method: 'POST', body: form })
    progress.stop()
    if (res.statusCode !== 201) await failure(res)
    const body = (await res.body.json()) as Record<string, unknown>
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`)
    process.stderr.write(`\nshare: ${String(body.share_url)}\ndelete token: ${String(body.delete_token)}\n`)
  } finally {
    progress.stop()
  }
}

export async function statusCommand(options: ClientOptions & { json?: boolean; secretFile?: string }): Promise<void> {
  // without MAYFLY_PUBLIC_STATUS only the cluster secret (or an admin) may look
  // asked without the secret first: a gateway that shows the cluster to anyone needs none
  let res = await request(`${options.url}/api/cluster`)
  if (res.statusCode === 401) {
    await res.body.dump()
    const secret = await findClusterSecret(options.secretFile)
    if (secret !== undefined && !maySend(secret, options.url)) throw new Error(keptBackMessage(secret, options.url))
    res = await request(`${options.url}/api/cluster`, { headers: authorization(secret) })
    if (res.statusCode === 401) {
      await res.body.dump()
      throw new Error(refusedSecretMessage(secret))
    }
  }
  if (res.statusCode !== 200) await failure(res)
  const cluster = (await res.body.json()) as {
    storage_nodes: {
      id: string; zone: string; state: string; draining: boolean; url: string; used_bytes: number; free_bytes: number
      blob_count: number; replicas: number
    }[]
    metadata: { kind: string; ok: boolean; detail?: MetadataDetail }
    gateways?: GatewayJson[] | null
    cache: { kind: string; ok: boolean; detail?: CacheDetail }
    queue: { kind: string; ok: boolean; queues: { queue: string; ready: number; dead: number }[]; detail?: QueueDetail }
    replication: {
      factor: number; write_quorum: number; blobs_below_factor: number | null; bytes_to_copy: number | null
      copy_rate_bytes_per_second: number; manager: { active: boolean }; orphans?: OrphansJson | null
    }
  }
  if (options.json === true) return void process.stdout.write(`${JSON.stringify(cluster, null, 2)}\n`)
  const rows = [['NODE', 'ZONE', 'STATE', 'URL', 'USED', 'FREE', 'BLOBS', 'REPLICAS']]
  for (const n of cluster.storage_nodes) {
    const state = n.draining ? `${n.state} (draining)` : n.state
    rows.push([n.id, n.zone, state, n.url, formatBytes(n.used_bytes), formatBytes(n.free_bytes), String(n.blob_count), String(n.replicas)])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`)
  const tier = (t: { kind: string; ok: boolean }) => `${t.kind} ${t.ok ? 'ok' : 'DOWN'}`
  const r = cluster.replication
  process.stdout.write(
    `\nmetadata: ${tier(cluster.metadata)}   cache: ${tier(cluster.cache)}   queue: ${tier(cluster.queue)}\n` +
      `replication: factor ${r.factor}, write quorum ${r.write_quorum}, blobs below factor: ${r.blobs_below_factor ?? 'unknown'}` +
      ` (${formatBytes(r.bytes_to_copy ?? 0)} to copy, ${formatBytes(r.copy_rate_bytes_per_second)}/s), manager ${r.manager.active ? 'active' : 'NOT RUNNING'}\n`,
  )
  const metadataLine = describeMetadata(cluster.metadata.detail)
  if (metadataLine !== null) process.stdout.write(`${metadataLine}\n`)
  const cacheLine = describeCache(cluster.cache.detail)
  if (cacheLine !== null) process.stdout.write(`${cacheLine}\n`)
  const brokersLine = describeBrokers(cluster.queue.detail)
  if (brokersLine !== null) process.stdout.write(`${brokersLine}\n`)
  for (const q of cluster.queue.queues) process.stdout.write(`queue ${q.queue}: ${q.ready} ready, ${q.dead} dead\n`)
  const gatewaysLine = describeGateways(cluster.gateways)
  if (gatewaysLine !== null) process.stdout.write(`${gatewaysLine}\n`)
  const orphansLine = r.orphans == null ? null : describeOrphans(r.orphans)
  if (orphansLine !== null) process.stdout.write(`${orphansLine}\n`)
}

/** /api/cluster's replication.orphans: copies of unknown blobs held for an operator */
export interface OrphansJson {
  hold: { reason: string; since: string; detail: string } | null
  held: number
  held_bytes: number
  kept: number
  kept_bytes: number
  released: number
}

/** One line on unknown blobs held instead of deleted, or null when there are none and no hold */
export function describeOrphans(o: OrphansJson): string | null {
  if (o.hold === null && o.held + o.kept + o.released === 0) return null
  const hold = o.hold === null ? 'no hold' : `HOLD (${o.hold.reason} since ${o.hold.since}): ${o.hold.detail}`
  return (
    `unknown blobs: ${o.held} copies held (${formatBytes(o.held_bytes)}), ${o.kept} kept (${formatBytes(o.kept_bytes)}), ` +
    `${o.released} being deleted; ${hold}. \`mayfly orphans list\` shows them; \`mayfly orphans delete\` or \`keep\` decides`
  )
}

/** what /api/cluster says of PostgreSQL (adapters/postgres/metadata.ts status); absent for the embedded store */
interface MetadataDetail {
  url?: string
  primary?: string | null
  timeline?: number | null
  last_failover_at?: string | null
  replicas?: { address: string; state: string; lag_bytes: number | null; lag_seconds: number | null }[]
  read_replicas?: { url: string; lag_ms: number | null; skipped: boolean; error: string | null }[]
  error?: string
}

/** `postgresql: primary …, replicas …, read replicas …`: one line for PostgreSQL, null for the embedded store */
function describeMetadata(d: MetadataDetail | undefined): string | null {
  if (d?.url === undefined) return null
  const primary = d.primary == null ? `no primary takes writes (${d.error ?? 'unknown'})` : `primary ${d.primary} (timeline ${d.timeline ?? '?'})`
  const parts = [`postgresql ${d.url}: ${primary}`]
  const behind = (r: { lag_bytes: number | null; lag_seconds: number | null }) =>
    r.lag_bytes === null ? 'lag unknown' : `${formatBytes(r.lag_bytes)} behind${r.lag_seconds === null ? '' : ` (${r.lag_seconds.toFixed(1)} s)`}`
  if (d.replicas !== undefined) parts.push(`replicas ${d.replicas.map((r) => `${r.address} ${r.state}, ${behind(r)}`).join('; ') || 'none'}`)
  if (d.read_replicas !== undefined && d.read_replicas.length > 0) {
    const read = (r: { url: string; lag_ms: number | null; skipped: boolean; error: string | null }) =>
      `${r.url} ${r.skipped ? `SKIPPED (${r.error ?? `${r.lag_ms ?? '?'} ms behind`})` : `${r.lag_ms} ms behind`}`
    parts.push(`read replicas ${d.read_replicas.map(read).join('; ')}`)
  }
  parts.push(`last failover ${d.last_failover_at ?? 'none seen'}`)
  return parts.join('; ')
}

/** what /api/cluster says of Redis (connection.ts redisStatus); absent for the embedded cache */
interface CacheDetail {
  mode?: string
  master?: string | null
  replicas?: { address: string; state: string; offset_lag: number }[]
  sentinels?: unknown[]
  sentinels_seeing_master?: number
  quorum?: number | null
  last_failover_at?: string | null
  error?: string
}

/** /api/cluster's queue.detail (RabbitMQ) */
interface QueueDetail {
  brokers?: { url: string; state: string }[]
  connected?: string
}

/** `rabbitmq: 2 of 3 brokers up: …`, or null for the embedded queue */
export function describeBrokers(d: QueueDetail | undefined): string | null {
  if (d?.brokers === undefined) return null
  const up = d.brokers.filter((b) => b.state === 'up').length
  const each = d.brokers.map((b) => `${new URL(b.url).host} ${b.state}${b.url === d.connected ? ' (publishing here)' : ''}`)
  return `rabbitmq: ${up} of ${d.brokers.length} brokers up: ${each.join('; ')}`
}

/** /api/cluster's gateways: each one heard from within the hour */
interface GatewayJson {
  id: string
  url: string
  pid: number
  state: string
  self: boolean
  heartbeat_age_ms: number
}

/** `gateways: 2 up: …`, or null when the store could not say (or none beats: a test's in-process gateway) */
export function describeGateways(list: GatewayJson[] | null | undefined): string | null {
  if (list == null || list.length === 0) return null
  const up = list.filter((g) => g.state === 'up').length
  const each = list.map((g) => `${g.url} (pid ${g.pid}) ${g.state}${g.state === 'up' ? '' : `, silent ${(g.heartbeat_age_ms / 1000).toFixed(0)} s`}${g.self ? ', answered this' : ''}`)
  return `gateways: ${up} of ${list.length} up: ${each.join('; ')}`
}

/** `redis: master …, replicas …, Sentinels …`: one line for Redis, null for the embedded cache */
function describeCache(d: CacheDetail | undefined): string | null {
  if (d?.mode === undefined) return null
  const parts = [`redis (${d.mode}): master ${d.master ?? 'unknown'}${d.error === undefined ? '' : ` (${d.error})`}`]
  if (d.replicas !== undefined) parts.push(`replicas ${d.replicas.map((r) => `${r.address} ${r.state}, ${r.offset_lag} bytes behind`).join('; ') || 'none'}`)
  if (d.sentinels !== undefined) parts.push(`${d.sentinels_seeing_master ?? 0} of ${d.sentinels.length} Sentinels see the master (quorum ${d.quorum ?? '?'})`)
  if (d.mode === 'sentinel') parts.push(`last failover ${d.last_failover_at ?? 'none seen'}`)
  return parts.join('; ')
}
