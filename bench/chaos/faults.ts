// The chaos run's faults (issue 10): one process at a time, of every kind in
// turn, killed (kill -9, then started again) or frozen (SIGSTOP for longer
// than its tier's timeout, then SIGCONT). Each fault finds its target in the
// lab as it is at that moment (the Redis master, the Patroni leader and the
// RabbitMQ leader move), and says which floor of ../shared/INFRA-NOTES.md
// its client-visible pause is judged against.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { labStartCommand } from '../../src/cli/lab/lab.ts'
import type { Lab, LabTier } from '../../src/cli/lab/topology.ts'

const run = promisify(execFile)
const ROOT = new URL('../../', import.meta.url).pathname

export type FaultKind = 'storage-node' | 'gateway' | 'worker' | 'replicator' | 'redis-master' | 'postgres-primary' | 'patroni-leader' | 'rabbitmq-leader'

export const FAULT_KINDS: FaultKind[] = ['storage-node', 'gateway', 'worker', 'replicator', 'redis-master', 'postgres-primary', 'patroni-leader', 'rabbitmq-leader']

/** INFRA-NOTES' floor of each kind's pause, ms (null: Mayfly must show no pause at all, or only what was in flight) */
export const FLOOR_MS: Record<FaultKind, number | null> = {
  'storage-node': null,
  gateway: null,
  worker: null,
  replicator: null,
  // Sentinel's failover; Redis only accelerates, so requests should not wait for it
  'redis-master': 2200,
  'postgres-primary': 2800,
  'patroni-leader': 10_500,
  'rabbitmq-leader': 400,
}

/** how long a frozen process stays frozen: past each tier's timeout */
const FREEZE_MS: Record<FaultKind, number> = {
  'storage-node': 6000, // suspect after 2 s
  gateway: 4000, // HAProxy takes it out after 2 checks of 500 ms
  worker: 8000,
  replicator: 8000, // leader lease 5 s
  'redis-master': 5000, // Sentinel down-after 1 s
  'postgres-primary': 14_000, // the whole member (Patroni and PostgreSQL): Patroni ttl 10 s
  'patroni-leader': 14_000,
  'rabbitmq-leader': 8000,
}

/** a killed process stays down this long before it is started again */
const DOWN_MS = 6000

export interface Target {
  /** what was hit, for the report: `node-b (pid 123)` */
  label: string
  /** the processes a freeze stops (a kill ends the first) */
  pids: number[]
  /** starts it again after a kill; null: its supervisor does (Patroni restarts a killed postmaster) */
  restart: (() => Promise<void>) | null
}

export interface Fault {
  name: string
  kind: FaultKind
  action: 'kill' | 'freeze'
  floorMs: number | null
}

export function faultList(kinds: FaultKind[], actions: ('kill' | 'freeze')[]): Fault[] {
  const out: Fault[] = []
  for (const action of actions) {
    for (const kind of kinds) {
      // a frozen member (Patroni and PostgreSQL) is found out only when its leader key lapses, as a killed Patroni
      const floorMs = action === 'freeze' && kind === 'postgres-primary' ? FLOOR_MS['patroni-leader'] : FLOOR_MS[kind]
      out.push({ name: `${action} ${kind}`, kind, action, floorMs })
    }
  }
  return out
}

const tierOf = (lab: Lab, name: LabTier['name']): LabTier => {
  const t = lab.tiers.find((x) => x.name === name)
  if (t === undefined) throw new Error(`the lab has no ${name} tier`)
  return t
}

async function scriptOut(tier: LabTier, ...args: string[]): Promise<string> {
  return (await run('sh', [join(ROOT, 'scripts', tier.script), ...args], { timeout: 60_000 })).stdout
}

async function pidFile(path: string): Promise<number> {
  return Number((await readFile(path, 'utf8')).split('\n')[0]!.trim())
}

/** pid -> parent pid of every process */
async function childrenOf(parent: number): Promise<number[]> {
  const { stdout } = await run('ps', ['-e', '-o', 'pid=,ppid='])
  return stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number)).filter(([, ppid]) => ppid === parent).map(([pid]) => pid!)
}

async function patroniLeader(lab: Lab): Promise<{ name: string; tier: LabTier }> {
  const tier = tierOf(lab, 'postgres')
  const members = (JSON.parse(await scriptOut(tier, 'status', tier.dir)) as { members: { name: string; role: string }[] }).members
  const leader = members.find((m) => m.role === 'leader')
  if (leader === undefined) throw new Error('no Patroni leader')
  return { name: leader.name, tier }
}

let rotation = 0

/** The process a fault of `kind` hits now, in the lab as it is. */
export async function findTarget(lab: Lab, kind: FaultKind, clusterJson: () => Promise<Record<string, unknown>>): Promise<Target> {
  const restartByName = (name: string) => () => labStartCommand(name, { dir: lab.dir })
  switch (kind) {
    case 'storage-node':
    case 'gateway':
    case 'worker': {
      const all = lab.processes.filter((p) => p.kind === kind)
      const p = all[rotation++ % all.length]!
      return { label: `${p.name} (pid ${p.pid})`, pids: [p.pid], restart: restartByName(p.name) }
    }
    case 'replicator': {
      const holder = ((await clusterJson()).replication as { manager?: { holder?: string } }).manager?.holder
      const pid = Number(holder?.split(':')[1])
      const p = lab.processes.find((q) => q.kind === 'replicator' && q.pid === pid)
      if (p === undefined) throw new Error(`the active replication manager (${holder ?? 'none'}) is not a lab process`)
      return { label: `${p.name}, the active manager (pid ${p.pid})`, pids: [p.pid], restart: restartByName(p.name) }
    }
    case 'redis-master': {
      const tier = tierOf(lab, 'redis')
      const line = (await scriptOut(tier, 'status', tier.dir)).split('\n').find((l) => /^redis-\d \S+ pid \d+, master/.test(l))
      if (line === undefined) throw new Error('no Redis master')
      const [, name, pid] = /^(redis-\d) \S+ pid (\d+)/.exec(line)!
      return { label: `${name}, the Redis master (pid ${pid})`, pids: [Number(pid)], restart: restartByName(name!) }
    }
    case 'postgres-primary': {
      const { name, tier } = await patroniLeader(lab)
      const postmaster = await pidFile(join(tier.dir, name, 'data', 'postmaster.pid'))
      // a kill ends the postmaster (Patroni, primary_start_timeout 0, fails over and restarts it as a replica);
      // a freeze stops the whole member, as a machine that stalls: Patroni, the postmaster and its backends
      const patroni = await pidFile(join(tier.dir, `${name}.pid`))
      return { label: `${name}'s postmaster, the primary (pid ${postmaster})`, pids: [postmaster, patroni, ...(await childrenOf(postmaster))], restart: null }
    }
    case 'patroni-leader': {
      const { name, tier } = await patroniLeader(lab)
      const patroni = await pidFile(join(tier.dir, `${name}.pid`))
      return { label: `${name}'s Patroni, the leader (pid ${patroni})`, pids: [patroni], restart: restartByName(name) }
    }
    case 'rabbitmq-leader': {
      const tier = tierOf(lab, 'rabbitmq')
      const [n] = (await scriptOut(tier, 'leader', tier.dir, `${lab.env.MAYFLY_NAMESPACE}.variants`)).trim().split(/\s+/)
      const brokers = (JSON.parse(await scriptOut(tier, 'status', tier.dir)) as { brokers: { number: number; pid: number | null }[] }).brokers
      const pid = brokers.find((b) => b.number === Number(n))?.pid
      if (pid == null) throw new Error(`no pid for broker ${n}`)
      return { label: `rabbit-${n}, leader of the variant queue (pid ${pid})`, pids: [pid], restart: restartByName(`rabbit-${n}`) }
    }
  }
}

/** Runs the fault on its target: kill -9 and start again after DOWN_MS, or SIGSTOP for its tier's freeze time, then SIGCONT. */
export async function inject(fault: Fault, target: Target): Promise<void> {
  const signal = (pids: number[], sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig)
      } catch {
        // gone already
      }
    }
  }
  if (fault.action === 'freeze') {
    signal(target.pids, 'SIGSTOP')
    await new Promise((r) => setTimeout(r, FREEZE_MS[fault.kind]))
    signal(target.pids, 'SIGCONT')
    return
  }
  signal(target.pids.slice(0, 1), 'SIGKILL')
  await new Promise((r) => setTimeout(r, DOWN_MS))
  if (target.restart !== null) await target.restart()
}
