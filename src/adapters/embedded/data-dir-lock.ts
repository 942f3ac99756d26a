// Who has a data directory's embedded metadata open. PGlite is one process's
// database: a second process that opens the same directory (a second `mayfly
// up`, or `mayfly migrate` under a running one) would corrupt it, and PGlite
// does not stop it (its postmaster.pid holds -42, never a real pid). So the
// process that opens it first writes <dataDir>/metadata.lock with its pid;
// another process finds it and is refused while that pid lives. A lock left
// by a process that died (kill -9) names a pid that is gone, or one reused
// by a process that started later (Linux: its start time in /proc differs),
// and is taken over.
import { readFile, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Conflict } from '../../core/errors.ts'

export interface DataDirLock {
  path: string
  release(): Promise<void>
}

interface Holder {
  pid: number
  /** the holder's start time (clock ticks since boot, /proc/<pid>/stat field 22) where known */
  started: string | null
  command: string
}

const LOCK_FILE = 'metadata.lock'

/** What /proc says of `pid` (Linux): its state and start time (clock ticks since boot); null elsewhere or when gone. */
async function procStat(pid: number): Promise<{ state: string; started: string } | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null)
  if (stat === null) return null
  // pid (comm) state ppid …: comm may hold spaces and parentheses
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { state: fields[0] ?? '', started: fields[19] ?? '' }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The live process holding the lock, or null when there is none (no file, a dead or reused pid, ourselves). */
async function liveHolder(path: string): Promise<Holder | null> {
  const text = await readFile(path, 'utf8').catch(() => null)
  if (text === null) return null
  let holder: Holder
  try {
    holder = JSON.parse(text) as Holder
  } catch {
    return null // half-written by a process that died while writing it
  }
  if (!Number.isInteger(holder.pid) || holder.pid === process.pid || !alive(holder.pid)) return null
  const now = await procStat(holder.pid)
  if (now?.state === 'Z') return null // exited, not yet reaped by its parent
  if (holder.started !== null && now !== null && now.started !== holder.started) return null
  return holder
}

/**
 * Takes the lock of `dataDir` for this process, or throws Conflict naming the
 * process that holds it. `command` says what holds it, for that message.
 */
export async function lockDataDir(dataDir: string, command: string): Promise<DataDirLock> {
  const path = join(dataDir, LOCK_FILE)
  const mine: Holder = { pid: process.pid, started: (await procStat(process.pid))?.started ?? null, command }
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, `${JSON.stringify(mine)}\n`, { flag: 'wx' })
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw err
    }
    const holder = await liveHolder(path)
    if (holder !== null) {
      throw new Conflict(
        `${dataDir} is in use by process ${holder.pid} (${holder.command}): its embedded metadata can be open in one process only; stop that process first`,
      )
    }
    await unlink(path).catch(() => undefined) // stale: its holder is gone
  }
  let released = false
  return {
    path,
    async release() {
      if (released) return
      released = true
      const text = await readFile(path, 'utf8').catch(() => '')
      if (text.includes(`"pid":${process.pid},`)) await unlink(path).catch(() => undefined)
    },
  }
}
