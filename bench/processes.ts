// Spawning and ending the servers under test: free loopback ports, a child
// whose output goes to a log file, waiting for a condition, and stopping a
// child by its pid (SIGTERM, then SIGKILL to its own process group).
import { spawn, type ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'

/** `count` distinct free ports on 127.0.0.1 (all held open until every one is known). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = []
  try {
    const ports: number[] = []
    for (let i = 0; i < count; i++) {
      const server = createServer()
      servers.push(server)
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(0, '127.0.0.1', () => resolve())
      })
      const address = server.address()
      if (address === null || typeof address === 'string') throw new Error('no port')
      ports.push(address.port)
    }
    return ports
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  }
}

export interface Spawned {
  child: ChildProcess
  pid: number
  logPath: string
  /** the last lines of its log, for error messages */
  logTail(lines?: number): string
}

/** Starts `command` in its own process group, stdout and stderr appended to logPath. */
export function spawnLogged(command: string, args: string[], options: { env: NodeJS.ProcessEnv; cwd?: string; logPath: string }): Spawned {
  const fd = openSync(options.logPath, 'a')
  const child = spawn(command, args, { env: options.env, cwd: options.cwd, stdio: ['ignore', fd, fd], detached: true })
  closeSync(fd)
  if (child.pid === undefined) throw new Error(`could not start ${command}`)
  return {
    child,
    pid: child.pid,
    logPath: options.logPath,
    logTail(lines = 20) {
      try {
        return readFileSync(options.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
      } catch {
        return ''
      }
    },
  }
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/**
 * SIGTERM to the child (by pid); if it has not exited after graceMs, SIGKILL
 * to its process group (it was spawned detached, so the group is the child and
 * whatever it started). Resolves once it has exited.
 */
export async function stopChild(s: Spawned, graceMs = 30_000): Promise<void> {
  if (hasExited(s.child)) return
  const exited = new Promise<void>((resolve) => s.child.once('exit', () => resolve()))
  process.kill(s.pid, 'SIGTERM')
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref())
  if ((await Promise.race([exited, timer])) === 'timeout') {
    try {
      process.kill(-s.pid, 'SIGKILL')
    } catch {
      // already gone
    }
    await exited
  }
}

/** Polls `check` every intervalMs until it returns true; throws `describe()` after timeoutMs. */
export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, describe: () => string, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(describe())
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}
