// Gateway memory during one 1 GiB upload and one 1 GiB download (DESIGN
// §5.9): VmRSS of the `mayfly up` process (gateway and worker) sampled from
// /proc/<pid>/status every 50 ms; growth = peak during the transfer minus the
// value just before it, after a warm-up of the same code paths. The body is
// generated (one random 1 MiB chunk repeated) and streamed both ways; the
// download is checked by length and sha256.
import { createHash, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { MayflyCluster } from './mayfly.ts'
import { multipartFrame, multipartStream } from './multipart.ts'
import { MiB } from './stats.ts'

export interface MemoryResult {
  sizeMiB: number
  baselineMiB: number
  uploadGrowthMiB: number
  downloadGrowthMiB: number
  uploadMiBPerSec: number
  downloadMiBPerSec: number
}

export async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  if (kb === null) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(kb[1]) / 1024
}

export async function measureMemory(cluster: MayflyCluster, sizeMiB = 1024): Promise<MemoryResult> {
  const chunk = randomBytes(MiB)
  await transfer(cluster, chunk, 16) // warm-up: the streaming paths compiled, pools and buffers made
  await settle()
  const before = await rssMiB(cluster.pid)
  const up = await sampled(cluster.pid, () => transfer(cluster, chunk, sizeMiB, 'upload'))
  await settle()
  const beforeDown = await rssMiB(cluster.pid)
  const down = await sampled(cluster.pid, () => up.value.download())
  return {
    sizeMiB,
    baselineMiB: before,
    uploadGrowthMiB: up.peak - before,
    downloadGrowthMiB: down.peak - beforeDown,
    uploadMiBPerSec: sizeMiB / up.seconds,
    downloadMiBPerSec: sizeMiB / down.seconds,
  }
}

/** Uploads `repeat` MiB (streamed); returns a function that downloads it back (or does both when `only` is absent). */
async function transfer(cluster: MayflyCluster, chunk: Buffer, repeat: number, only?: 'upload'): Promise<{ download(): Promise<void> }> {
  const hash = createHash('sha256')
  for (let i = 0; i < repeat; i++) hash.update(chunk)
  const sha256 = hash.digest('hex')
  const frame = multipartFrame(`memory-${repeat}MiB.bin`, 'application/octet-stream', repeat * MiB)
  const answer = await cluster.upload(frame.contentType, multipartStream(frame, chunk, repeat), frame.length)
  if (answer.sha256 !== sha256 || answer.size !== repeat * MiB) throw new Error('the large upload was stored with the wrong size or sha256')
  const download = () => cluster.download(answer.id, repeat * MiB, sha256)
  if (only === undefined) await download()
  return { download }
}

async function sampled<T>(pid: number, work: () => Promise<T>): Promise<{ value: T; peak: number; seconds: number }> {
  let peak = await rssMiB(pid)
  let running = true
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, await rssMiB(pid))
      await new Promise((r) => setTimeout(r, 50))
    }
  })()
  const started = performance.now()
  try {
    const value = await work()
    return { value, peak: Math.max(peak, await rssMiB(pid)), seconds: (performance.now() - started) / 1000 }
  } finally {
    running = false
    await sampler
  }
}

/** A moment of quiet so the "before" figure is not caught mid-GC or mid-request. */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 1000))
}
