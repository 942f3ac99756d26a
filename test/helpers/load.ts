// A mixed load for fault tests: uploads of random files and downloads of the
// files already acknowledged, each download checked byte for byte, running
// until stopped. It records every acknowledged upload, every failure and the
// slowest request, so a test can say: zero client errors, nothing lost, no
// request waited past a bound.
import { randomBytes } from 'node:crypto'
import { sha256, upload } from './http.ts'

export interface LoadReport {
  uploads: number
  downloads: number
  /** every failure a client saw, with what it was doing */
  errors: string[]
  /** the same failures with when their requests began and ended (Date.now()) */
  failures: { what: string; error: string; startedAt: number; endedAt: number }[]
  /** the longest request, ms */
  slowestMs: number
  slowest: string
  /** when each successful upload and download ended (Date.now()), in order */
  uploadedAt: number[]
  downloadedAt: number[]
}

/** The longest time in [from, to] without an entry of `times` (sorted), and where it began. */
export function longestGap(times: number[], from: number, to: number): { ms: number; from: number } {
  let last = from
  let best = { ms: 0, from }
  for (const t of [...times.filter((x) => x > from && x < to), to]) {
    if (t - last > best.ms) best = { ms: t - last, from: last }
    last = t
  }
  return best
}

export interface MixedLoad {
  /** acknowledged uploads: file id -> sha256 of the bytes sent */
  acked: Map<string, string>
  /** Stops the clients, waits for their requests in flight, and reports. */
  stop(): Promise<LoadReport>
}

export interface MixedLoadOptions {
  /** concurrent clients (half upload, half download) */
  clients?: number
  /** upload sizes are random in [minBytes, maxBytes] */
  minBytes?: number
  maxBytes?: number
}

export function startMixedLoad(base: string, options: MixedLoadOptions = {}): MixedLoad {
  const clients = options.clients ?? 4
  const minBytes = options.minBytes ?? 1024
  const maxBytes = options.maxBytes ?? 300 * 1024
  const acked = new Map<string, string>()
  const report: LoadReport = { uploads: 0, downloads: 0, errors: [], failures: [], slowestMs: 0, slowest: '', uploadedAt: [], downloadedAt: [] }
  let stopped = false

  async function timed<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    const started = Date.now()
    try {
      return await fn()
    } catch (err) {
      report.errors.push(`${what}: ${(err as Error).message}`)
      report.failures.push({ what, error: (err as Error).message, startedAt: started, endedAt: Date.now() })
    } finally {
      const ms = Date.now() - started
      if (ms > report.slowestMs) {
        report.slowestMs = ms
        report.slowest = what
      }
    }
    // after a failure: a client that fails at once must not spin (it would starve the test's timers)
    await new Promise((resolve) => setTimeout(resolve, 50))
    return undefined
  }

  async function uploader(): Promise<void> {
    while (!stopped) {
      const data = randomBytes(minBytes + Math.floor(Math.random() * (maxBytes - minBytes + 1)))
      await timed(`upload of ${data.length} bytes`, async () => {
        const res = await upload(base, data)
        if (res.status !== 201) throw new Error(`status ${res.status} ${JSON.stringify(res.body)}`)
        acked.set(String(res.body.id), sha256(data))
        report.uploads++
        report.uploadedAt.push(Date.now())
      })
    }
  }

  async function downloader(): Promise<void> {
    while (!stopped) {
      const ids = [...acked.keys()]
      if (ids.length === 0) {
        await new Promise((r) => setTimeout(r, 20))
        continue
      }
      const id = ids[Math.floor(Math.random() * ids.length)]!
      await timed(`download of ${id}`, async () => {
        const res = await fetch(`${base}/api/download/${id}`)
        const body = Buffer.from(await res.arrayBuffer())
        if (res.status !== 200) throw new Error(`status ${res.status} ${body.toString().slice(0, 200)}`)
        if (sha256(body) !== acked.get(id)) throw new Error(`wrong bytes (${body.length} bytes)`)
        report.downloads++
        report.downloadedAt.push(Date.now())
      })
    }
  }

  const running = Promise.all(Array.from({ length: clients }, (_, i) => (i % 2 === 0 ? uploader() : downloader())))
  return {
    acked,
    async stop() {
      stopped = true
      await running
      return report
    },
  }
}
