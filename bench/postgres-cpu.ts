// CPU per upload in the PostgreSQL phase (bench/postgres.ts), by the
// processes an upload involves: snapshots from /proc before and after a
// measured upload phase (bench/process-cpu.ts).
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { MEMBER_NAMES, type PatroniHa } from '../test/helpers/patroni-ha.ts'
import type { MayflyCluster } from './mayfly.ts'
import { machineBusyMs, processTable, treeMs } from './process-cpu.ts'

export const CPU_GROUPS = ['gateway', 'nodes', 'postgres', 'replicas', 'ha-daemons', 'bench', 'machine'] as const
export type CpuGroup = (typeof CPU_GROUPS)[number]
/**
 * CPU ms per upload: the `mayfly up` process (gateway, worker, manager); its
 * storage nodes; PostgreSQL (single: the database's backends and the
 * server's background processes; Patroni: the primary's whole process tree);
 * the two replicas' trees; the daemons of the Patroni topology (the three
 * Patroni processes, etcd, HAProxy if it runs); the bench client; and
 * the whole machine: these, the kernel's writeback workers (the fsyncs) and
 * whatever else runs on it.
 */
export type CpuPerUpload = Record<CpuGroup, number>

/** CPU ms by group and key (a pid, or a tree's root) */
export type CpuSnapshot = Record<CpuGroup, Map<number, number>>

export async function cpuSnapshot(cluster: MayflyCluster, ha: PatroniHa | null): Promise<CpuSnapshot> {
  const table = await processTable()
  const snap = Object.fromEntries(CPU_GROUPS.map((g) => [g, new Map<number, number>()])) as CpuSnapshot
  snap.gateway.set(cluster.pid, table.get(cluster.pid)?.ownMs ?? 0)
  for (const p of table.values()) if (p.ppid === cluster.pid) snap.nodes.set(p.pid, treeMs(table, p.pid))
  snap.bench.set(process.pid, table.get(process.pid)?.ownMs ?? 0)
  snap.machine.set(0, await machineBusyMs())
  if (ha === null) {
    // the machine's server is shared with other work: only this database's backends and the server's own processes
    const client = new pg.Client({ connectionString: cluster.databaseUrl! })
    await client.connect()
    try {
      const { rows } = await client.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (datname = current_database() OR backend_type <> 'client backend')",
      )
      for (const { pid } of rows) snap.postgres.set(pid, table.get(pid)?.ownMs ?? 0)
    } finally {
      await client.end()
    }
  } else {
    const leader = (await ha.leader()).name
    for (const name of MEMBER_NAMES) {
      const postmaster = await ha.postmasterPid(name)
      // the whole tree with what its postmaster reaped: Mayfly's probes of each member are short-lived backends
      snap[name === leader ? 'postgres' : 'replicas'].set(postmaster, treeMs(table, postmaster))
      const patroni = await ha.patroniPid(name)
      snap['ha-daemons'].set(patroni, table.get(patroni)?.ownMs ?? 0)
    }
    for (const p of table.values()) {
      if ((p.comm === 'etcd' || p.comm === 'haproxy') && ofThisCluster(p.pid, ha.dir)) snap['ha-daemons'].set(p.pid, p.ownMs)
    }
  }
  return snap
}

/** a daemon of this Patroni topology, not of another one on the machine */
function ofThisCluster(pid: number, dir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)
  } catch {
    return false
  }
}

/** the CPU each group spent between two snapshots, per upload (a key new in `after` counts from 0) */
export function perUpload(before: CpuSnapshot, after: CpuSnapshot, uploads: number): CpuPerUpload {
  const out = {} as CpuPerUpload
  for (const g of CPU_GROUPS) {
    let ms = 0
    for (const [key, value] of after[g]) ms += value - (before[g].get(key) ?? 0)
    out[g] = uploads > 0 ? ms / uploads : Number.NaN
  }
  return out
}

export function formatCpu(c: CpuPerUpload): string {
  const ours = CPU_GROUPS.filter((g) => g !== 'machine').reduce((sum, g) => sum + c[g], 0)
  const parts = CPU_GROUPS.filter((g) => g !== 'machine' && !(c[g] === 0 && (g === 'replicas' || g === 'ha-daemons')))
  return `${parts.map((g) => `${g} ${c[g].toFixed(2)}`).join(', ')}; ours ${ours.toFixed(2)} of the machine's ${c.machine.toFixed(2)} ms`
}
