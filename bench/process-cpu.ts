// CPU time of processes from /proc, for "where the time goes" figures that a
// shared machine moves less than throughput: take a snapshot before and
// after a phase, and the difference per group of processes divided by the
// operations is CPU per operation. Linux only (the bench is).
import { readdir, readFile } from 'node:fs/promises'

/** USER_HZ: /proc counts CPU time in these (100 on every Linux the bench runs on) */
const MS_PER_TICK = 10

export interface ProcessInfo {
  pid: number
  ppid: number
  comm: string
  /** user + system time of the process itself, ms */
  ownMs: number
  /** user + system time of its children that exited and were waited for, ms */
  reapedMs: number
}

/** Every process now, by pid. */
export async function processTable(): Promise<Map<number, ProcessInfo>> {
  const table = new Map<number, ProcessInfo>()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    if (stat === '') continue
    // pid (comm) state ppid …: comm may hold spaces and parentheses, so split after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const n = (i: number) => Number(fields[i])
    table.set(Number(entry), {
      pid: Number(entry),
      ppid: n(1),
      comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
      ownMs: (n(11) + n(12)) * MS_PER_TICK,
      reapedMs: (n(13) + n(14)) * MS_PER_TICK,
    })
  }
  return table
}

/** `root` and everything below it. */
export function descendants(table: Map<number, ProcessInfo>, root: number): number[] {
  const children = new Map<number, number[]>()
  for (const p of table.values()) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid])
  const out: number[] = []
  const queue = table.has(root) ? [root] : []
  while (queue.length > 0) {
    const pid = queue.shift()!
    out.push(pid)
    queue.push(...(children.get(pid) ?? []))
  }
  return out
}

/**
 * CPU ms of a process tree: every live process's own time, plus what the
 * root reaped from children that exited (a postmaster's short-lived
 * backends), so a child that exits between two snapshots is not lost.
 */
export function treeMs(table: Map<number, ProcessInfo>, root: number): number {
  const pids = descendants(table, root)
  return pids.reduce((sum, pid) => sum + table.get(pid)!.ownMs, 0) + (table.get(root)?.reapedMs ?? 0)
}

/** CPU ms the whole machine spent busy (every core, everything but idle and iowait). */
export async function machineBusyMs(): Promise<number> {
  const cpu = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal
  const busy = cpu[0]! + cpu[1]! + cpu[2]! + cpu[5]! + cpu[6]! + cpu[7]!
  return busy * MS_PER_TICK
}
