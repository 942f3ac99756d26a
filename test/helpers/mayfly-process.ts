// Runs the `mayfly` CLI (src/main.ts) as real processes for fault and e2e
// tests: long-running services (gateway, worker, up) that a test kills by pid,
// and short client commands (upload, download, status). Every service still
// running when the test process exits is SIGKILLed, so a failed test leaves
// nothing behind. Also: free ports, and the children of a process (to check
// that `mayfly up` leaves no storage node behind).
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NO_RATE_LIMITS } from './no-rate-limits.ts'

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
export const NODE_BIN = join(ROOT, 'node_modules', '.bin', 'node')
export const MAIN = join(ROOT, 'src', 'main.ts')

export interface MayflyProcess {
  pid: number
  /** stdout and stderr so far, for assertion messages */
  output(): string
  /** resolves with the exit code or the signal when the process ends */
  exited: Promise<number | NodeJS.Signals | null>
  /** true until the process has exited */
  alive(): boolean
  /** Sends a signal (default SIGKILL); for a terminating one, resolves once the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals | null>
}

const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** The environment of a child: ours without MAYFLY_* and node:test's variables, no rate limits (no-rate-limits.ts), plus `env`. */
export function childEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('MAYFLY_') && !k.startsWith('NODE_TEST') && v !== undefined) out[k] = v
  }
  return { ...out, ...NO_RATE_LIMITS, ...env }
}

/**
 * Starts `mayfly <args>` (e.g. ['gateway'], ['worker'], ['up', …]) with the
 * given MAYFLY_* variables. `wrapper`: a command that runs it, its command
 * line appended, and leaves it the process spawned (a tracer: `strace -D …`).
 */
export function spawnMayfly(
  args: string[],
  env: Record<string, string>,
  options: { wrapper?: string[]; /** its own process group, as a shell's foreground job: kill(-pid) reaches it and its children */ group?: boolean } = {},
): MayflyProcess {
  const [command, ...commandArgs] = [...(options.wrapper ?? []), NODE_BIN, MAIN, ...args]
  const child = spawn(command!, commandArgs, { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: options.group === true })
  running.add(child)
  let output = ''
  const keep = (s: string) => {
    output += s
    if (output.length > 200_000) output = output.slice(-100_000)
  }
  child.stdout.setEncoding('utf8').on('data', keep)
  child.stderr.setEncoding('utf8').on('data', keep)
  const exited = new Promise<number | NodeJS.Signals | null>((done) => {
    child.once('exit', (code, signal) => {
      running.delete(child)
      done(signal ?? code)
    })
  })
  const alive = () => child.exitCode === null && child.signalCode === null
  return {
    pid: child.pid ?? -1,
    output: () => output,
    exited,
    alive,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (alive()) child.kill(signal)
      if (signal === 'SIGSTOP' || signal === 'SIGCONT') return null
      return exited
    },
  }
}

/** Runs a short `mayfly <args>` command to its end (killed after timeoutMs). */
export function runMayfly(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      NODE_BIN,
      [MAIN, ...args],
      { cwd: ROOT, env: childEnv(options.env ?? {}), timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
        done({ code, stdout, stderr })
      },
    )
  })
}

/** A TCP port that was free a moment ago (the OS picks it). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((done, fail) => server.once('error', fail).listen(0, '127.0.0.1', done))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((done) => server.close(() => done()))
  return port
}

/** `count` distinct free ports. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < count) ports.add(await freePort())
  return [...ports]
}

/** Pids of the live processes whose parent is `pid` (from /proc). */
export async function childPids(pid: number): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    // pid (comm) state ppid …: comm may hold spaces and parentheses, so split after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields[1] === String(pid) && fields[0] !== 'Z') pids.push(Number(entry))
  }
  return pids
}

/** True while `pid` is a live process (not gone, not a zombie). */
export async function isAlive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null)
  return stat !== null && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}

/** Resident memory of a process in bytes (VmRSS in /proc/<pid>/status). */
export async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]
  if (kb === undefined) throw new Error(`no VmRSS for process ${pid}`)
  return Number(kb) * 1024
}

/** Waits until the process logs a line matching `pattern` (or fails when it exits or after timeoutMs). */
export async function waitForOutput(proc: MayflyProcess, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const m = pattern.exec(proc.output())
    if (m !== null) return m
    if (!proc.alive()) throw new Error(`process exited (${String(await proc.exited)}) before logging ${pattern}:\n${proc.output()}`)
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}:\n${proc.output()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
