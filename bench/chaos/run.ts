// `npm run chaos` (issue 10): the whole HA topology (`mayfly lab up`) under a
// steady mixed load, one fault at a time of every kind in turn, then a
// Jepsen-style check of every acknowledged operation against what the
// cluster holds. Prints a table (per fault: the client-visible pause of
// uploads and downloads, errors, next to the floor of INFRA-NOTES) and keeps
// the history and the verdict as JSON. Exits 1 when an invariant broke.
//
//   npm run chaos                         every kind killed, then every kind frozen (~12 min)
//   npm run chaos -- --short              a gateway and the PostgreSQL primary killed (~3 min; what
//                                         the test suite runs)
//   npm run chaos -- --faults kill:gateway,freeze:redis-master
//   options: --dir DIR (the lab's, default a new temp dir), --out FILE (the JSON), --keep (leave the lab up)
import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { labDownCommand, labUpCommand, tierLines } from '../../src/cli/lab/lab.ts'
import { isLabProcess, readLab, type Lab } from '../../src/cli/lab/topology.ts'
import { check, type Verdict } from './checks.ts'
import { FAULT_KINDS, faultList, findTarget, inject, type Fault, type FaultKind } from './faults.ts'
import { startChaosLoad, type Operation } from './load.ts'
import { printReport, type FaultResult } from './report.ts'
import { longestGap } from '../../test/helpers/load.ts'
import { PHOTOS } from '../../test/helpers/testdata.ts'

const GRACE_SECONDS = 5
// the faults that cross the most tiers at once; a node and a RabbitMQ leader killed have fault tests of their own
const SHORT: Fault[] = faultList(['gateway', 'postgres-primary'], ['kill'])

export interface ChaosOptions {
  dir?: string
  out?: string
  faults: Fault[]
  keep?: boolean
  log?: (line: string) => void
}

export interface ChaosResult {
  lab: { dir: string; url: string; startSeconds: number | null }
  faults: FaultResult[]
  verdict: Verdict
  history: Operation[]
  out: string
}

function parseFaults(text: string): Fault[] {
  return text.split(',').map((spec) => {
    const [action, kind] = spec.trim().split(':') as ['kill' | 'freeze', FaultKind]
    if ((action !== 'kill' && action !== 'freeze') || !FAULT_KINDS.includes(kind)) {
      throw new Error(`--faults takes action:kind pairs (kill or freeze; ${FAULT_KINDS.join(', ')}), got ${JSON.stringify(spec)}`)
    }
    return faultList([kind], [action])[0]!
  })
}

async function clusterOf(lab: Lab): Promise<Record<string, unknown>> {
  const res = await fetch(`${lab.url}/api/cluster`, { headers: { authorization: `Bearer ${lab.env.MAYFLY_CLUSTER_SECRET}` }, signal: AbortSignal.timeout(5000) })
  if (res.status !== 200) throw new Error(`/api/cluster answered ${res.status}`)
  return (await res.json()) as Record<string, unknown>
}

/** Every process of the lab running (as lab.json says now: a restart changes pids), every tier member well, the cluster whole as Mayfly sees it. */
async function healthy(dir: string): Promise<string | null> {
  const lab = await readLab(dir)
  if (lab === null) return `no lab in ${dir}`
  for (const p of lab.processes) if (!(await isLabProcess(p.pid, lab.dir))) return `${p.name} is not running`
  const members = await tierLines(lab)
  for (const t of members) if (t.state !== 'running' && t.state !== 'streaming') return `${t.tier} ${t.name}: ${t.state}`
  // Patroni drops to asynchronous replication while no standby can be synchronous (a member being
  // rewound after the last fault): a failover then may lose what the old primary acknowledged
  if (!members.some((t) => t.tier === 'postgres' && t.role === 'sync_standby')) return 'postgres: no synchronous standby yet'
  const c = await clusterOf(lab).catch((err: Error) => ({ error: err.message }) as Record<string, unknown>)
  if ('error' in c) return String(c.error)
  const nodes = (c.storage_nodes as { state: string }[]).filter((n) => n.state === 'up').length
  const gateways = ((c.gateways as { state: string }[] | null) ?? []).filter((g) => g.state === 'up').length
  const manager = (c.replication as { manager: { active: boolean } }).manager.active
  const tiers = ['metadata', 'cache', 'queue'].filter((t) => !(c[t] as { ok: boolean }).ok)
  if (nodes < 3 || gateways < 2 || !manager || tiers.length > 0) return `cluster: ${nodes} nodes up, ${gateways} gateways up, manager ${manager ? 'active' : 'none'}, down: ${tiers.join(', ') || 'none'}`
  return null
}

async function waitHealthy(dir: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let why = await healthy(dir); why !== null; why = await healthy(dir)) {
    if (Date.now() > deadline) throw new Error(`the lab did not heal within ${timeoutMs / 1000} s: ${why}`)
    await new Promise((r) => setTimeout(r, 500))
  }
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`chaos: ${line}\n`))
  // mkdtemp makes it 0700: the lab's PostgreSQL and RabbitMQ users must be able to enter it
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'mayfly-chaos-')))
  await mkdir(dir, { recursive: true })
  await chmod(dir, 0o755)
  // short grace and sweeps, so that the dead files' bound is checked within the run; no
  // rate limits (every client of the load is 127.0.0.1: a public instance's limits would refuse it)
  Object.assign(process.env, {
    MAYFLY_RATE_LIMIT_UPLOADS: '0',
    MAYFLY_RATE_LIMIT_DOWNLOADS: '0',
    MAYFLY_RATE_LIMIT_PASSWORD_ATTEMPTS: '0',
    MAYFLY_DELETE_GRACE_SECONDS: String(GRACE_SECONDS),
    MAYFLY_SWEEP_INTERVAL_SECONDS: '1',
    MAYFLY_GATEWAY_DEAD_AFTER_SECONDS: '5',
    MAYFLY_LOG_LEVEL: 'info',
  })
  await labUpCommand({ dir })
  const lab = (await readLab(dir))!
  const out = options.out ?? join(dir, 'chaos-report.json')
  try {
    await waitHealthy(dir, 60_000)
    const load = await startChaosLoad(lab.url, { photosDir: PHOTOS, shortExpirySeconds: 20 })
    await new Promise((r) => setTimeout(r, 5000))
    const results: FaultResult[] = []
    for (const fault of options.faults) {
      await waitHealthy(dir, 90_000)
      const fresh = (await readLab(dir))!
      const target = await findTarget(fresh, fault.kind, () => clusterOf(fresh))
      log(`${fault.name}: ${target.label}`)
      load.setFault(fault.name)
      const from = Date.now()
      await inject(fault, target)
      await waitHealthy(dir, 120_000)
      await new Promise((r) => setTimeout(r, 3000))
      const to = Date.now()
      load.setFault(null)
      const ops = load.history.filter((o) => o.startedAt >= from && o.startedAt <= to)
      // the history is in the order operations ended
      const ends = (kind: Operation['kind']) => load.history.filter((o) => o.kind === kind && o.ok).map((o) => o.endedAt)
      const result: FaultResult = {
        fault: fault.name,
        target: target.label,
        floorMs: fault.floorMs,
        seconds: Math.round((to - from) / 100) / 10,
        uploadPauseMs: longestGap(ends('upload'), from, to).ms,
        downloadPauseMs: longestGap(ends('download'), from, to).ms,
        operations: ops.length,
        errors: ops.filter((o) => !o.ok).length,
        errorSamples: [...new Set(ops.filter((o) => !o.ok).map((o) => `${o.kind}: ${o.error ?? o.status}`))].slice(0, 5),
      }
      results.push(result)
      log(`${fault.name}: upload pause ${result.uploadPauseMs} ms, download pause ${result.downloadPauseMs} ms, ${result.errors} errors of ${result.operations}`)
    }
    await load.stop()
    log('checking every acknowledged operation against the cluster')
    const nodes = lab.processes.filter((p) => p.kind === 'storage-node').map((p) => `http://127.0.0.1:${p.port}`)
    const verdict = await check({
      url: lab.url,
      secret: lab.env.MAYFLY_CLUSTER_SECRET!,
      databaseUrl: lab.env.MAYFLY_DATABASE_URL!,
      nodes,
      graceMs: GRACE_SECONDS * 1000,
      files: load.files,
      history: load.history,
    }, 90_000)
    const result: ChaosResult = { lab: { dir, url: lab.url, startSeconds: lab.startSeconds ?? null }, faults: results, verdict, history: load.history, out }
    await writeFile(out, `${JSON.stringify({ ...result, files: [...load.files.values()].map(({ deleteToken: _, ...f }) => f) }, null, 2)}\n`)
    printReport(result)
    return result
  } finally {
    if (options.keep !== true) await labDownCommand({ dir })
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { short: { type: 'boolean' }, faults: { type: 'string' }, dir: { type: 'string' }, out: { type: 'string' }, keep: { type: 'boolean' } } })
  const faults = values.faults !== undefined ? parseFaults(values.faults) : values.short === true ? SHORT : faultList(FAULT_KINDS, ['kill', 'freeze'])
  const result = await runChaos({ dir: values.dir, out: values.out, faults, keep: values.keep })
  process.exitCode = result.verdict.violations.length > 0 ? 1 : 0
}

export { SHORT as SHORT_FAULTS }
