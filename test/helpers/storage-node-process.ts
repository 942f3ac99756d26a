// Spawns a storage node as a child process (test/helpers/storage-node-entry.ts)
// for integration, e2e and fault tests, and kills it by pid. Every node still
// running when the test process exits is SIGKILLed and every data directory
// this helper made is removed, so a failed test leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, open, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { blobPath } from '../../src/services/storage-node/blob-files.ts'
import { BLOB_HEADER_BYTES, decodeHeader, tableOffset } from '../../src/services/storage-node/blob-format.ts'

export { BLOB_HEADER_BYTES, BLOCK_BYTES } from '../../src/services/storage-node/blob-format.ts'

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const NODE_BIN = join(ROOT, 'node_modules', '.bin', 'node')
const ENTRY = join(ROOT, 'test', 'helpers', 'storage-node-entry.ts')

export interface StorageNodeProcessOptions {
  zone: string
  secret: string
  /** default: a fresh temp directory, removed when the test process exits */
  dataDir?: string
  controlUrl?: string
  /** default 0: the OS picks a free port (the url is read from the node's start-up log) */
  port?: number
  /** more MAYFLY_* variables (they win over the ones above) */
  env?: Record<string, string>
  /** how long to wait for the node to answer /health; default 15 s */
  startTimeoutMs?: number
  /**
   * a command that runs the node, the node's command line appended (a tracer:
   * `strace -D …`); it must leave the node the process it spawned, as
   * `strace -D` does, so that pid and signals are the node's
   */
  wrapper?: string[]
}

export interface StorageNodeProcess {
  url: string
  pid: number
  dataDir: string
  /** the node's persistent id */
  id: string
  /** Sends a signal (default SIGKILL); for a terminating signal, resolves once the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>
  /** SIGTERM (graceful close), SIGKILL after 5 s; resolves once the process is gone. */
  stop(): Promise<void>
  /** what the node wrote to stderr so far (and its log lines on stdout), for assertion messages */
  output(): string
  /** resolves with the exit code or signal when the process ends */
  exited: Promise<number | NodeJS.Signals | null>
}

const running = new Set<ChildProcess>()
const madeDirs = new Set<string>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
  for (const dir of madeDirs) rmSync(dir, { recursive: true, force: true })
})

export async function startStorageNodeProcess(options: StorageNodeProcessOptions): Promise<StorageNodeProcess> {
  let dataDir = options.dataDir
  if (dataDir === undefined) {
    dataDir = await mkdtemp(join(tmpdir(), 'mayfly-node-'))
    madeDirs.add(dataDir)
  }
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MAYFLY_') && !k.startsWith('NODE_TEST') && v !== undefined) env[k] = v
  Object.assign(env, {
    MAYFLY_DATA_DIR: dataDir,
    MAYFLY_ZONE: options.zone,
    MAYFLY_CLUSTER_SECRET: options.secret,
    MAYFLY_HOST: '127.0.0.1',
    MAYFLY_PORT: String(options.port ?? 0),
    MAYFLY_LOG_LEVEL: 'info',
    ...(options.controlUrl !== undefined ? { MAYFLY_CONTROL_URL: options.controlUrl } : {}),
    ...options.env,
  })
  const [command, ...args] = [...(options.wrapper ?? []), NODE_BIN, ENTRY]
  const child = spawn(command!, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  let output = ''
  const exited = new Promise<number | NodeJS.Signals | null>((done) => {
    child.once('exit', (code, signal) => {
      running.delete(child)
      done(signal ?? code)
    })
  })
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    output += s
  })

  const started = new Promise<{ url: string; id: string }>((done, fail) => {
    const lines = createInterface({ input: child.stdout })
    lines.on('line', (line) => {
      output += `${line}\n`
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string; id?: string }
        if (entry.msg === 'storage node started' && entry.url !== undefined && entry.id !== undefined) done({ url: entry.url, id: entry.id })
      } catch {
        // not a log line
      }
    })
    void exited.then((how) => fail(new Error(`storage node exited (${how}) before it started:\n${output}`)))
    const timer = setTimeout(() => fail(new Error(`storage node did not start in time:\n${output}`)), options.startTimeoutMs ?? 15000)
    timer.unref()
  })

  async function kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill(signal)
    if (signal !== 'SIGSTOP' && signal !== 'SIGCONT' && signal !== 'SIGUSR1' && signal !== 'SIGUSR2') await exited
  }

  try {
    const { url, id } = await started
    const res = await fetch(`${url}/health`)
    if (!res.ok) throw new Error(`storage node /health answered ${res.status}:\n${output}`)
    await res.body?.cancel()
    return {
      url,
      id,
      pid: child.pid ?? -1,
      dataDir,
      kill,
      async stop() {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill('SIGCONT') // a stopped process cannot handle SIGTERM
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(timer)
      },
      output: () => output,
      exited,
    }
  } catch (err) {
    child.kill('SIGKILL')
    await exited
    throw err
  }
}

/** Path of a blob's file on a node's disk (header, bytes, block table: blob-format.ts). */
export function blobFilePath(dataDir: string, key: string): string {
  return blobPath(dataDir, key)
}

/** Flips one bit of the byte at `offset` of the blob's file (header, bytes or table), behind the node's back. */
export async function flipBlobFileByte(dataDir: string, key: string, offset: number, mask = 0x01): Promise<void> {
  const fh = await open(blobPath(dataDir, key), 'r+')
  try {
    const buf = Buffer.alloc(1)
    const { bytesRead } = await fh.read(buf, 0, 1, offset)
    if (bytesRead !== 1) throw new Error(`the blob file of ${key} has no byte ${offset}`)
    buf[0] = (buf[0] ?? 0) ^ mask
    await fh.write(buf, 0, 1, offset)
  } finally {
    await fh.close()
  }
}

/** Flips one bit of byte `index` of the blob's bytes on disk, behind the node's back. */
export async function flipBlobByte(dataDir: string, key: string, index = 0): Promise<void> {
  await flipBlobFileByte(dataDir, key, BLOB_HEADER_BYTES + index)
}

/** Flips one bit of the CRC32 of block `block` in the blob's block table. */
export async function flipBlockTableByte(dataDir: string, key: string, block: number): Promise<void> {
  const fh = await open(blobPath(dataDir, key), 'r')
  let header
  try {
    const buf = Buffer.alloc(BLOB_HEADER_BYTES)
    await fh.read(buf, 0, BLOB_HEADER_BYTES, 0)
    header = decodeHeader(buf)
  } finally {
    await fh.close()
  }
  if (header?.format !== 2) throw new Error(`the blob file of ${key} has no block table`)
  await flipBlobFileByte(dataDir, key, tableOffset(header) + 4 * block)
}

/** Writes `bytes` as blob `key` in the format before block checksums (MAYFLYB1), behind the node's back. */
export async function writeLegacyBlob(dataDir: string, key: string, bytes: Buffer): Promise<void> {
  const sha256 = createHash('sha256').update(bytes).digest('hex')
  const header = `MAYFLYB1 ${sha256} ${String(bytes.length).padStart(20, '0')}`.padEnd(BLOB_HEADER_BYTES - 1, ' ') + '\n'
  const path = blobPath(dataDir, key)
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, Buffer.concat([Buffer.from(header, 'latin1'), bytes]))
}
