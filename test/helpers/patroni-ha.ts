// The PostgreSQL tier of the roadmap for a test: scripts/patroni-ha.sh starts
// etcd and three Patroni members of PostgreSQL 15 (synchronous_mode) on spare
// loopback ports in a directory of the test's own; this wraps it. One
// topology serves every test of a file: each test takes a database of its
// own (database()), and after a fault heal() brings all three members back
// as a leader and two streaming replicas.
import { execFile } from 'node:child_process'
import { readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { ROOT } from './mayfly-process.ts'
import { startScriptTopology } from './ha-script.ts'
import { waitFor } from './wait.ts'

const run = promisify(execFile)
const SCRIPT = join(ROOT, 'scripts', 'patroni-ha.sh')

export type MemberName = 'pg1' | 'pg2' | 'pg3'
export const MEMBER_NAMES: MemberName[] = ['pg1', 'pg2', 'pg3']

export interface PatroniMember {
  name: MemberName
  role: 'leader' | 'sync_standby' | 'replica' | string
  state: string
  port: number
  lag?: number | string
  timeline?: number
}

export interface PatroniHa {
  dir: string
  /** host:port of every member, in libpq's multi-host form, without a database */
  hosts: string
  /** HAProxy's port: one address that reaches the primary (Patroni's REST checks) */
  haproxyPort: number
  portOf(name: MemberName): number
  /** Patroni's /cluster as the first member that answers has it */
  members(): Promise<PatroniMember[]>
  /** the member Patroni names leader */
  leader(): Promise<PatroniMember>
  /** a fresh database on the cluster; the multi-host url of it (MAYFLY_DATABASE_URL) */
  database(): Promise<string>
  /** the member's postmaster pid */
  postmasterPid(name: MemberName): Promise<number>
  /** the member's Patroni pid */
  patroniPid(name: MemberName): Promise<number>
  /** SIGSTOP / SIGCONT of the member's every process: Patroni, the postmaster and its children */
  freeze(name: MemberName): Promise<void>
  thaw(name: MemberName): Promise<void>
  /** when some member other than `old` first took a write (polled every 50 ms) */
  newPrimaryAt(old: MemberName, timeoutMs?: number): Promise<{ name: MemberName; at: number }>
  /** a planned switchover to the synchronous standby (patronictl) */
  switchover(): Promise<void>
  /** Patroni's maintenance mode (patronictl pause/resume): it touches no member, fails nothing over */
  maintenance(on: boolean): Promise<void>
  /** every member's Patroni running (a killed one started again), a leader and two streaming replicas */
  heal(): Promise<void>
  stop(): Promise<void>
}

/** processes by pid -> parent pid */
async function parents(): Promise<Map<number, number>> {
  const out = new Map<number, number>()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (Number.isFinite(ppid)) out.set(Number(entry), ppid)
  }
  return out
}

export async function startPatroniHa(): Promise<PatroniHa> {
  const { dir, topology } = await startScriptTopology(SCRIPT, 'mayfly-patroni-ha-', 120_000)
  const ports: Record<MemberName, number> = {
    pg1: Number(topology.PG1_PORT),
    pg2: Number(topology.PG2_PORT),
    pg3: Number(topology.PG3_PORT),
  }
  const hosts = MEMBER_NAMES.map((n) => `127.0.0.1:${ports[n]}`).join(',')
  const frozen = new Set<MemberName>()

  const members = async (): Promise<PatroniMember[]> => {
    const { stdout } = await run('sh', [SCRIPT, 'status', dir], { timeout: 10_000 })
    return (JSON.parse(stdout) as { members: PatroniMember[] }).members
  }
  const leader = async () => {
    const found = (await members()).find((m) => m.role === 'leader' && m.state === 'running')
    if (found === undefined) throw new Error('no running leader')
    return found
  }
  const postmasterPid = async (name: MemberName) =>
    Number((await readFile(join(dir, name, 'data', 'postmaster.pid'), 'utf8')).split('\n')[0])
  const patroniPid = async (name: MemberName) => Number((await readFile(join(dir, `${name}.pid`), 'utf8')).trim())

  /** whether the member takes a write now (a short-lived connection of its own) */
  async function takesWrites(name: MemberName): Promise<boolean> {
    const client = new pg.Client({ host: '127.0.0.1', port: ports[name], user: 'postgres', database: 'postgres', connectionTimeoutMillis: 300, query_timeout: 300 })
    client.on('error', () => undefined)
    try {
      await client.connect()
      const { rows } = await client.query<{ ro: boolean }>('SELECT pg_is_in_recovery() AS ro')
      if (rows[0]?.ro !== false) return false
      await client.query('CREATE TEMP TABLE probe (x int)') // a write a read-only session refuses
      return true
    } catch {
      return false
    } finally {
      await client.end().catch(() => undefined)
    }
  }

  async function signalMember(name: MemberName, signal: NodeJS.Signals): Promise<void> {
    const postmaster = await postmasterPid(name)
    const tree = await parents()
    const pids = [await patroniPid(name), postmaster, ...[...tree].filter(([, ppid]) => ppid === postmaster).map(([pid]) => pid)]
    for (const pid of pids) {
      try {
        process.kill(pid, signal)
      } catch {
        // gone already
      }
    }
  }

  const patroniAlive = async (name: MemberName) => {
    const pid = await patroniPid(name).catch(() => NaN)
    if (!Number.isFinite(pid)) return false
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    return cmd.includes(`${dir}/`)
  }

  return {
    dir,
    hosts,
    haproxyPort: Number(topology.HAPROXY_PORT),
    portOf: (name) => ports[name],
    members,
    leader,
    async database() {
      const name = `mayfly_${Math.random().toString(36).slice(2, 10)}`
      const primary = (await leader()).name as MemberName
      const client = new pg.Client({ host: '127.0.0.1', port: ports[primary], user: 'postgres', database: 'postgres' })
      await client.connect()
      try {
        await client.query(`CREATE DATABASE ${name}`)
      } finally {
        await client.end()
      }
      return `postgres://postgres@${hosts}/${name}`
    },
    postmasterPid,
    patroniPid,
    async freeze(name) {
      frozen.add(name)
      await signalMember(name, 'SIGSTOP')
    },
    async thaw(name) {
      frozen.delete(name)
      await signalMember(name, 'SIGCONT')
    },
    async newPrimaryAt(old, timeoutMs = 30_000) {
      return waitFor(`a member other than ${old} to take writes`, async () => {
        for (const name of MEMBER_NAMES.filter((n) => n !== old)) {
          if (await takesWrites(name)) return { name, at: Date.now() }
        }
        return undefined
      }, timeoutMs, 50)
    },
    async switchover() {
      await run('sh', [SCRIPT, 'switchover', dir], { timeout: 60_000 })
    },
    async maintenance(on) {
      await run('sh', [SCRIPT, 'maintenance', dir, on ? 'on' : 'off'], { timeout: 60_000 })
    },
    async heal() {
      for (const name of [...frozen]) {
        frozen.delete(name)
        await signalMember(name, 'SIGCONT')
      }
      for (const [i, name] of MEMBER_NAMES.entries()) {
        if (!(await patroniAlive(name))) await run('sh', [SCRIPT, 'start-member', dir, String(i + 1)], { timeout: 60_000 })
      }
      const healthy = async () => {
        const all = await members().catch(() => [])
        const running = all.filter((m) => m.role === 'leader' && m.state === 'running').length
        const following = all.filter((m) => m.role !== 'leader' && (m.state === 'streaming' || m.state === 'running'))
        return running === 1 && following.length === 2 && all.some((m) => m.role === 'sync_standby') ? true : all
      }
      const settle = async (ms: number) => {
        const deadline = Date.now() + ms
        for (;;) {
          const state = await healthy()
          if (state === true) return true
          if (Date.now() > deadline) return state
          await new Promise((resolve) => setTimeout(resolve, 250))
        }
      }
      let state = await settle(30_000)
      if (state === true) return
      // Patroni did not get back to a synchronous standby by itself (seen once in a few runs after a
      // frozen leader resumed: the old leader stuck behind, the other replica never named synchronous):
      // the replicas are copied afresh from the leader
      for (const m of state) {
        if (m.role !== 'leader') await run('sh', [SCRIPT, 'reinit-member', dir, m.name.slice(2)], { timeout: 90_000 })
      }
      state = await settle(60_000)
      if (state !== true) {
        const logs = await Promise.all(MEMBER_NAMES.map(async (n) => `${n}:\n${(await readFile(join(dir, `${n}.log`), 'utf8').catch(() => '')).slice(-1500)}`))
        throw new Error(`no leader and two streaming replicas, one synchronous, after a reinit: ${JSON.stringify(state)}\n${logs.join('\n')}`)
      }
    },
    async stop() {
      for (const name of [...frozen]) await signalMember(name, 'SIGCONT').catch(() => undefined)
      await run('sh', [SCRIPT, 'stop', dir], { timeout: 60_000 }).catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
    },
  }
}
