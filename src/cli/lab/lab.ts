// `mayfly lab up|status|down` (issue 10): the whole HA topology on this one
// machine, from Debian's packages, each process separately killable:
// Redis master + 2 replicas + 3 Sentinels (scripts/redis-ha.sh), etcd + 3
// Patroni members (scripts/patroni-ha.sh), 3 RabbitMQ brokers
// (scripts/rabbitmq-ha.sh), then 3 storage nodes in zones a, b, c, 2
// gateways behind HAProxy on :5000, 2 workers and 2 replication managers.
// Everything lives under one directory (default ./lab): data, logs, pid
// files, and lab.json, which says what was started. `down` stops only that.
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, open, readFile, writeFile } from 'node:fs/promises'
import { createConnection } from 'node:net'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gatewayBalancerConfig } from './gateway-balancer.ts'
import { isLabProcess, readLab, writeLab, type Lab, type LabProcess, type LabTier } from './topology.ts'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const MAIN = join(ROOT, 'src', 'main.ts')
const script = (name: string) => join(ROOT, 'scripts', name)

export interface LabOptions {
  dir?: string
  port?: string
}

const labDir = (options: LabOptions) => resolve(options.dir ?? 'lab')

function say(text: string): void {
  process.stderr.write(`mayfly lab: ${text}\n`)
}

/** NAME=value lines */
function parseEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const i = line.indexOf('=')
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim()
  }
  return out
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => (socket.destroy(), done(true)))
    socket.on('error', () => done(false))
  })
}

/**
 * PostgreSQL and RabbitMQ run as their own users (they refuse root), in
 * directories under the lab's: every directory above it must let them pass
 * (a lab under /root, or under a mkdtemp directory, does not).
 */
async function mustBeReachable(dir: string): Promise<void> {
  for (const user of ['postgres', 'rabbitmq']) {
    const ok = await run('setpriv', [`--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', 'test', '-x', dir]).then(() => true, () => false)
    if (!ok) throw new Error(`the lab directory ${dir} cannot be reached by the ${user} user (a directory above it is not searchable by others); use --dir under /tmp or /srv`)
  }
}

async function startTier(dir: string, name: LabTier['name'], file: string): Promise<{ env: Record<string, string> }> {
  const tierDir = join(dir, name)
  await mkdir(tierDir, { recursive: true })
  const started = Date.now()
  await run('sh', [script(file), 'start', tierDir], { timeout: 180_000 }).catch((err: Error & { stderr?: string }) => {
    throw new Error(`${file} start failed: ${err.stderr?.trim() || err.message}`)
  })
  say(`${name} up in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return { env: parseEnv(await readFile(join(tierDir, 'mayfly.env'), 'utf8')) }
}

/** Starts (or starts again) a detached process of the lab: its own session (Ctrl-C of `up` leaves it), output appended to its log. */
async function spawnDetached(lab: Lab, p: LabProcess): Promise<LabProcess> {
  const out = await open(p.log, 'a')
  const child = spawn(p.command, p.args, {
    cwd: ROOT,
    env: { ...withoutMayfly(process.env), ...p.env, MAYFLY_LAB_DIR: lab.dir },
    stdio: ['ignore', out.fd, out.fd],
    detached: true,
  })
  child.unref()
  await out.close()
  p.pid = child.pid ?? -1
  const i = lab.processes.findIndex((q) => q.name === p.name)
  if (i === -1) lab.processes.push(p)
  else lab.processes[i] = p
  await writeLab(lab)
  return p
}

function withoutMayfly(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k, v]) => !k.startsWith('MAYFLY_') && v !== undefined)) as Record<string, string>
}

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

export async function labUpCommand(options: LabOptions): Promise<void> {
  const dir = labDir(options)
  const existing = await readLab(dir)
  if (existing !== null && (await Promise.all(existing.processes.map((p) => isLabProcess(p.pid, dir)))).some(Boolean)) {
    throw new Error(`a lab runs in ${dir} already (mayfly lab status --dir ${dir}; mayfly lab down --dir ${dir})`)
  }
  const port = Number(options.port ?? 5000)
  const gatewayPorts = [port + 1, port + 2]
  const nodePorts = [8001, 8002, 8003]
  for (const p of [port, ...gatewayPorts, ...nodePorts]) {
    if (await portInUse(p)) throw new Error(`port ${p} is taken (is \`mayfly up\` running?); the lab needs ${port}-${port + 2} and 8001-8003`)
  }
  const begun = Date.now()
  await mkdir(join(dir, 'logs'), { recursive: true })
  await chmod(dir, 0o755)
  await mustBeReachable(dir)
  const secret = randomBytes(32).toString('base64url')
  const lab: Lab = { dir, url: `http://127.0.0.1:${port}`, startedAt: new Date().toISOString(), env: {}, tiers: [], processes: [] }
  await writeLab(lab)

  say(`starting Redis with Sentinel, PostgreSQL with Patroni and RabbitMQ in ${dir} (about 20 s)`)
  const wanted: [LabTier['name'], string][] = [['redis', 'redis-ha.sh'], ['postgres', 'patroni-ha.sh'], ['rabbitmq', 'rabbitmq-ha.sh']]
  // recorded before they start: a script that fails halfway is stopped by `down` too
  lab.tiers = wanted.map(([name, file]) => ({ name, script: file, dir: join(dir, name) }))
  await writeLab(lab)
  const tiers = await Promise.allSettled(wanted.map(([name, file]) => startTier(dir, name, file)))
  const failed = tiers.find((t) => t.status === 'rejected')
  if (failed !== undefined) {
    await labDownCommand({ dir })
    throw (failed as PromiseRejectedResult).reason
  }
  const tierEnv = Object.assign({}, ...tiers.map((t) => (t as PromiseFulfilledResult<{ env: Record<string, string> }>).value.env)) as Record<string, string>
  // the caller's MAYFLY_* settings reach every process, now and when `lab start` starts one again
  const callerEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('MAYFLY_') && k !== 'MAYFLY_LAB_DIR')) as Record<string, string>
  lab.env = {
    ...callerEnv,
    ...tierEnv,
    MAYFLY_CLUSTER_SECRET: secret,
    MAYFLY_NAMESPACE: 'lab',
    MAYFLY_HOST: '127.0.0.1',
    MAYFLY_TRUSTED_PROXIES: '127.0.0.1',
    MAYFLY_PUBLIC_STATUS: 'true',
    MAYFLY_PUBLIC_URL: lab.url,
    MAYFLY_LOG_LEVEL: 'info',
  }
  await writeFile(join(dir, 'mayfly.env'), Object.entries(lab.env).map(([k, v]) => `${k}=${v}`).join('\n') + '\n', { mode: 0o600 })

  try {
    const node = process.execPath
    const haproxyConfig = join(dir, 'haproxy.cfg')
    await writeFile(haproxyConfig, gatewayBalancerConfig({
      listen: { host: '127.0.0.1', port },
      gateways: gatewayPorts.map((p, i) => ({ name: `gateway-${i + 1}`, host: '127.0.0.1', port: p })),
    }))
    const logOf = (name: string) => join(dir, 'logs', `${name}.log`)
    await spawnDetached(lab, { name: 'haproxy', kind: 'haproxy', port, pid: 0, log: logOf('haproxy'), command: 'haproxy', args: ['-db', '-f', haproxyConfig], env: {} })
    const mayfly = (name: string, kind: LabProcess['kind'], env: Record<string, string>, extra: Partial<LabProcess> = {}): LabProcess => ({
      name, kind, pid: 0, log: logOf(name), command: node, args: [MAIN, kind], env: { ...env, MAYFLY_DATA_DIR: join(dir, name) }, ...extra,
    })
    for (const [i, p] of gatewayPorts.entries()) {
      await spawnDetached(lab, mayfly(`gateway-${i + 1}`, 'gateway', { ...lab.env, MAYFLY_PORT: String(p), MAYFLY_ADVERTISE_URL: `http://127.0.0.1:${p}` }, { port: p }))
    }
    for (const [i, p] of nodePorts.entries()) {
      const zone = 'abc'[i]!
      const nodeEnv = {
        ...callerEnv,
        MAYFLY_CLUSTER_SECRET: secret,
        MAYFLY_HOST: '127.0.0.1',
        MAYFLY_PORT: String(p),
        MAYFLY_ZONE: zone,
        MAYFLY_CONTROL_URL: lab.url,
        MAYFLY_ADVERTISE_URL: `http://127.0.0.1:${p}`,
        MAYFLY_LOG_LEVEL: 'info',
      }
      await spawnDetached(lab, mayfly(`node-${zone}`, 'storage-node', nodeEnv, { port: p, zone }))
    }
    for (const kind of ['worker', 'replicator'] as const) {
      for (const n of [1, 2]) await spawnDetached(lab, mayfly(`${kind}-${n}`, kind, lab.env))
    }
    await waitUntil('the gateways to be ready behind HAProxy', 90_000, async () => {
      for (const p of lab.processes) if (!(await isLabProcess(p.pid, dir))) throw new Error(`${p.name} exited at start; see ${p.log}`)
      const res = await fetch(`${lab.url}/ready`)
      await res.body?.cancel()
      return res.status === 200
    })
  } catch (err) {
    say(`start failed: ${(err as Error).message}; stopping what started`)
    await labDownCommand({ dir })
    throw err
  }
  lab.startSeconds = Math.round((Date.now() - begun) / 100) / 10
  await writeLab(lab)
  say(`up in ${lab.startSeconds} s: ${lab.url} (status: mayfly lab status --dir ${dir}; stop: mayfly lab down --dir ${dir})`)
  await labStatusCommand({ dir })
}

export interface TierLine {
  tier: string
  name: string
  pid: string
  state: string
  role: string
}

/**
 * Every member of the lab's infrastructure tiers as its script reports it
 * (state `running` when well). `leaders`: also ask RabbitMQ which broker leads
 * the variant queue (a second of CPU: rabbitmqctl boots an Erlang VM).
 */
export async function tierLines(lab: Lab, options: { leaders?: boolean } = {}): Promise<TierLine[]> {
  const lines: TierLine[] = []
  for (const t of lab.tiers) {
    const { stdout } = await run('sh', [script(t.script), 'status', t.dir], { timeout: 30_000 }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }))
    if (t.name === 'postgres') {
      try {
        const members = (JSON.parse(stdout) as { members: { name: string; role: string; state: string; port: number }[] }).members
        for (const m of members) {
          const pid = await readFile(join(t.dir, `${m.name}.pid`), 'utf8').then((s) => `${s.trim()} (patroni)`, () => '')
          lines.push({ tier: 'postgres', name: `${m.name} :${m.port}`, pid, state: m.state, role: m.role })
        }
      } catch {
        lines.push({ tier: 'postgres', name: 'patroni', pid: '', state: 'no member answers', role: '' })
      }
    } else if (t.name === 'rabbitmq') {
      try {
        const brokers = (JSON.parse(stdout) as { brokers: { name: string; port: number; pid: number | null; alive: boolean; running_in_cluster: boolean }[] }).brokers
        const queue = `${lab.env.MAYFLY_NAMESPACE ?? 'lab'}.variants`
        const leader = options.leaders !== true ? undefined : await run('sh', [script(t.script), 'leader', t.dir, queue], { timeout: 30_000 }).then((r) => r.stdout.trim().split(/\s+/)[1], () => undefined)
        for (const b of brokers) {
          const state = b.alive ? (b.running_in_cluster ? 'running' : 'alive, not in cluster') : 'DEAD'
          lines.push({ tier: 'rabbitmq', name: `${b.name} :${b.port}`, pid: String(b.pid ?? ''), state, role: b.name === leader ? `leader of ${queue}` : '' })
        }
      } catch {
        lines.push({ tier: 'rabbitmq', name: 'brokers', pid: '', state: stdout.trim().slice(0, 80) || 'unknown', role: '' })
      }
    } else {
      // redis-ha.sh status: `redis-1 127.0.0.1:port pid N, role…` or `… down`
      for (const l of stdout.trim().split('\n').filter(Boolean)) {
        const m = /^(\S+) (\S+) (?:pid (\d+), (.*)|down)$/.exec(l)
        if (m === null) continue
        lines.push({ tier: 'redis', name: `${m[1]} ${m[2]}`, pid: m[3] ?? '', state: m[3] === undefined ? 'DEAD' : 'running', role: m[4] ?? '' })
      }
    }
  }
  return lines
}

export async function labStatusCommand(options: LabOptions & { json?: boolean }): Promise<void> {
  const dir = labDir(options)
  const lab = await readLab(dir)
  if (lab === null) throw new Error(`no lab in ${dir} (mayfly lab up --dir ${dir})`)
  const processes = await Promise.all(lab.processes.map(async (p) => ({ ...p, alive: await isLabProcess(p.pid, dir) })))
  const cluster = await fetch(`${lab.url}/api/cluster`, { headers: { authorization: `Bearer ${lab.env.MAYFLY_CLUSTER_SECRET}` }, signal: AbortSignal.timeout(3000) })
    .then((r) => (r.ok ? (r.json() as Promise<Record<string, unknown>>) : null))
    .catch(() => null)
  const tiers = await tierLines(lab, { leaders: true })
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify({ dir, url: lab.url, start_seconds: lab.startSeconds ?? null, processes, tiers, cluster }, null, 2)}\n`)
    return
  }
  const rows = [['TIER', 'NAME', 'PID', 'STATE', 'ROLE / PORT']]
  const manager = (cluster?.replication as { manager?: { holder?: string } } | undefined)?.manager?.holder ?? ''
  for (const p of processes) {
    const role = p.kind === 'replicator' && manager.includes(String(p.pid)) ? 'active manager' : p.port !== undefined ? `:${p.port}${p.zone ? ` zone ${p.zone}` : ''}` : ''
    rows.push([p.kind, p.name, String(p.pid), p.alive ? 'running' : 'DEAD', role])
  }
  for (const t of tiers) rows.push([t.tier, t.name, t.pid, t.state, t.role])
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`)
  process.stdout.write(cluster === null ? `\nthe gateways do not answer at ${lab.url}\n` : `\n${lab.url}: mayfly status --url ${lab.url} shows the cluster as Mayfly sees it\n`)
}

export async function labDownCommand(options: LabOptions): Promise<void> {
  const dir = labDir(options)
  const lab = await readLab(dir)
  if (lab === null) throw new Error(`no lab in ${dir}`)
  // what makes work first, the nodes after, HAProxy last; then the tiers
  const order: LabProcess['kind'][] = ['gateway', 'worker', 'replicator', 'storage-node', 'haproxy']
  for (const kind of order) {
    const group = lab.processes.filter((p) => p.kind === kind)
    await Promise.all(group.map((p) => stopProcess(p, dir)))
  }
  for (const t of [...lab.tiers].reverse()) {
    await run('sh', [script(t.script), 'stop', t.dir], { timeout: 120_000 }).catch((err: Error) => say(`${t.script} stop: ${err.message}`))
  }
  say(`stopped the lab in ${dir} (its data stays there)`)
}

/** SIGTERM, SIGKILL after 10 s; a frozen process is woken first so that it can end. */
async function stopProcess(p: LabProcess, dir: string): Promise<void> {
  if (!(await isLabProcess(p.pid, dir))) return
  process.kill(p.pid, 'SIGCONT')
  process.kill(p.pid, 'SIGTERM')
  const deadline = Date.now() + 10_000
  while (await isLabProcess(p.pid, dir)) {
    if (Date.now() > deadline) {
      process.kill(p.pid, 'SIGKILL')
      break
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * `mayfly lab start NAME`: starts one process of the lab again after it was
 * killed: a Mayfly process or HAProxy as `up` started it, or a member of an
 * infrastructure tier through its script (redis-N comes back as a replica of
 * the current master, pgN and rabbit-N rejoin their clusters).
 */
export async function labStartCommand(name: string, options: LabOptions): Promise<void> {
  const dir = labDir(options)
  const lab = await readLab(dir)
  if (lab === null) throw new Error(`no lab in ${dir}`)
  const p = lab.processes.find((q) => q.name === name)
  if (p !== undefined) {
    if (await isLabProcess(p.pid, dir)) throw new Error(`${name} runs already (pid ${p.pid})`)
    await spawnDetached(lab, p)
    say(`${name} started again (pid ${p.pid})`)
    return
  }
  const member = /^(redis|pg|rabbit)-?([123])$/.exec(name)
  const tier = member === null ? undefined : lab.tiers.find((t) => t.name === { redis: 'redis', pg: 'postgres', rabbit: 'rabbitmq' }[member[1] as 'redis' | 'pg' | 'rabbit'])
  if (member === null || tier === undefined) {
    const names = [...lab.processes.map((q) => q.name), 'redis-1..3', 'pg1..3', 'rabbit-1..3']
    throw new Error(`no process ${JSON.stringify(name)} in the lab; one of: ${names.join(', ')}`)
  }
  const args = tier.name === 'redis' ? ['restart', tier.dir, `redis-${member[2]}`] : ['start-member', tier.dir, member[2]!]
  await run('sh', [script(tier.script), ...args], { timeout: 180_000 }).catch((err: Error & { stderr?: string }) => {
    throw new Error(`${tier.script} ${args[0]}: ${err.stderr?.trim() || err.message}`)
  })
  say(`${name} started again`)
}
