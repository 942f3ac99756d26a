// The chaos run's steady mixed load (issue 10): uploads of photos and small
// files (some limited to a few downloads, some short-lived), downloads of
// what was acknowledged, deletes. Every attempt goes into the history with
// its times and outcome, as Jepsen records operations, so that the checks
// (checks.ts) can hold every acknowledged operation against the cluster's
// final state. A failed request is not retried as such: the client goes on
// with its next operation, and the pause a fault causes is the longest time
// without a success.
import { createHash, randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface Operation {
  kind: 'upload' | 'download' | 'delete'
  /** the file (an upload's once acknowledged) */
  fileId: string | null
  startedAt: number
  endedAt: number
  /** HTTP status, or null when no answer came */
  status: number | null
  ok: boolean
  /** the fault running when it began (null: between faults) */
  fault: string | null
  error?: string
  /** downloads: the bytes served matched the upload's sha256 */
  bytesMatched?: boolean
}

/** What an acknowledged upload promised. */
export interface AckedFile {
  id: string
  sha256: string
  size: number
  image: boolean
  maxDownloads: number | null
  expiresAt: number
  deleteToken: string
  /** when an acknowledged delete ended */
  deletedAt?: number
}

export interface ChaosLoad {
  history: Operation[]
  files: Map<string, AckedFile>
  /** the fault now running, recorded on every operation that begins */
  setFault(name: string | null): void
  stop(): Promise<void>
}

interface Payload {
  bytes: Buffer
  name: string
  mime: string
}

async function photoPayloads(dir: string): Promise<Payload[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.jpg')).sort()
  return Promise.all(names.map(async (name) => ({ bytes: await readFile(join(dir, name)), name, mime: 'image/jpeg' })))
}

export async function startChaosLoad(base: string, options: { photosDir: string; shortExpirySeconds: number }): Promise<ChaosLoad> {
  const photos = await photoPayloads(options.photosDir)
  const history: Operation[] = []
  const files = new Map<string, AckedFile>()
  let fault: string | null = null
  let stopped = false
  let n = 0

  async function attempt(kind: Operation['kind'], fileId: string | null, fn: (op: Operation) => Promise<void>): Promise<void> {
    const op: Operation = { kind, fileId, startedAt: Date.now(), endedAt: 0, status: null, ok: false, fault }
    try {
      await fn(op)
    } catch (err) {
      op.error = (err as Error).message
    }
    op.endedAt = Date.now()
    history.push(op)
    // a client that fails at once does not spin
    if (!op.ok) await new Promise((r) => setTimeout(r, 100))
  }

  async function uploadOne(): Promise<void> {
    const i = n++
    const payload: Payload = i % 4 === 0 ? photos[(i / 4) % photos.length]! : { bytes: randomBytes(1024 + Math.floor(Math.random() * 64 * 1024)), name: `file-${i}.bin`, mime: 'application/octet-stream' }
    const maxDownloads = i % 3 === 1 ? 2 : null
    const expiresIn = i % 5 === 2 ? options.shortExpirySeconds : null
    await attempt('upload', null, async (op) => {
      const form = new FormData()
      if (maxDownloads !== null) form.append('max_downloads', String(maxDownloads))
      if (expiresIn !== null) form.append('expires_in', String(expiresIn))
      form.append('file', new Blob([payload.bytes], { type: payload.mime }), payload.name)
      const res = await fetch(`${base}/api/upload`, { method: 'POST', body: form, signal: AbortSignal.timeout(30_000) })
      op.status = res.status
      const body = (await res.json()) as Record<string, unknown>
      if (res.status !== 201) throw new Error(`${res.status} ${String(body.error)}`)
      const sha256 = createHash('sha256').update(payload.bytes).digest('hex')
      if (body.sha256 !== sha256) throw new Error(`acknowledged with sha256 ${String(body.sha256)}, sent ${sha256}`)
      op.ok = true
      op.fileId = String(body.id)
      files.set(op.fileId, {
        id: op.fileId,
        sha256,
        size: payload.bytes.length,
        image: payload.mime === 'image/jpeg',
        maxDownloads,
        expiresAt: Date.parse(String(body.expires_at)),
        deleteToken: String(body.delete_token),
      })
    })
  }

  function pick(filter: (f: AckedFile) => boolean): AckedFile | undefined {
    const live = [...files.values()].filter((f) => f.deletedAt === undefined && filter(f))
    return live[Math.floor(Math.random() * live.length)]
  }

  async function downloadOne(limited: boolean): Promise<void> {
    const file = pick((f) => (f.maxDownloads !== null) === limited)
    if (file === undefined) return void (await new Promise((r) => setTimeout(r, 50)))
    await attempt('download', file.id, async (op) => {
      const res = await fetch(`${base}/api/download/${file.id}`, { signal: AbortSignal.timeout(30_000) })
      op.status = res.status
      const bytes = Buffer.from(await res.arrayBuffer())
      if (res.status === 200) {
        op.bytesMatched = createHash('sha256').update(bytes).digest('hex') === file.sha256
        op.ok = op.bytesMatched
        if (!op.ok) throw new Error(`wrong bytes: ${bytes.length} served of ${file.size}`)
        return
      }
      // a link that died as promised (its limit, its time, a delete) is an answer, not a failure
      const reason = (JSON.parse(bytes.toString() || '{}') as { error?: string }).error
      if (res.status === 410 && (reason === 'download_limit_reached' || reason === 'expired' || reason === 'deleted')) {
        op.ok = true
        return
      }
      throw new Error(`${res.status} ${reason ?? ''}`)
    })
  }

  async function deleteOne(): Promise<void> {
    // links that cannot die on their own meanwhile: a delete then answers 204, anything else is an error
    const file = pick((f) => f.maxDownloads === null && !f.image && f.expiresAt > Date.now() + 60_000)
    if (file === undefined) return
    await attempt('delete', file.id, async (op) => {
      const res = await fetch(`${base}/api/files/${file.id}`, { method: 'DELETE', headers: { 'x-delete-token': file.deleteToken }, signal: AbortSignal.timeout(30_000) })
      op.status = res.status
      await res.body?.cancel()
      if (res.status !== 204) throw new Error(`${res.status}`)
      op.ok = true
      file.deletedAt = Date.now()
    })
  }

  const loop = async (step: () => Promise<void>, pauseMs: number) => {
    while (!stopped) {
      await step()
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs))
    }
  }
  // paced, so that a fault's pause shows, not a machine run flat out (2 cores run the whole lab)
  const running = Promise.all([loop(uploadOne, 100), loop(uploadOne, 150), loop(() => downloadOne(false), 50), loop(() => downloadOne(false), 50), loop(() => downloadOne(true), 100), loop(deleteOne, 1500)])
  return {
    history,
    files,
    setFault(name) {
      fault = name
    },
    async stop() {
      stopped = true
      await running
    },
  }
}
