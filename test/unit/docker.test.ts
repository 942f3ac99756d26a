// Docker packaging (Dockerfile, .dockerignore, docker-compose.yml, docker/),
// checked without a Docker engine (DESIGN §8): docker-compose parses and
// interpolates the compose file, the CLI says whether each service's command
// exists, the app's own config schema judges each service's environment, the
// Dockerfile's health check script runs against a local HTTP server,
// Patroni's own config loader reads each member's baked config with that
// member's environment, HAProxy checks both of its configs, and the
// gateways' one is held to what `mayfly lab` runs (gatewayBalancerConfig).
// The compose file has the lab's topology (issue 10): two gateways behind
// HAProxy, three storage nodes in zones a, b, c, two workers, two
// replication managers, Redis with three Sentinels, etcd with three Patroni
// members, and three RabbitMQ brokers in one cluster.
import { after, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join, matchesGlob } from 'node:path'
import { loadConfig } from '../../src/config.ts'
import { splitPostgresUrl } from '../../src/adapters/postgres/hosts.ts'
import { gatewayBalancerConfig } from '../../src/cli/lab/gateway-balancer.ts'
import { COMPOSE_GATEWAYS, composeGatewayBalancerConfig, COMPOSE_LISTEN } from '../../docker/gateway-balancer/generate.ts'

const ROOT = join(import.meta.dirname, '../..')
const NODE = join(ROOT, 'node_modules/.bin/node')
const SECRET = 'docker-test-secret-0123456789'
const IMAGE = 'mayfly:local'
const REDIS = ['redis-1', 'redis-2', 'redis-3']
const SENTINELS = ['sentinel-1', 'sentinel-2', 'sentinel-3']
/** the Patroni members; etcd and both HAProxies run from their image too */
const MEMBERS = ['pg1', 'pg2', 'pg3']
const PG_HAPROXY = 'pg-haproxy'
const PG_TIER = ['etcd', ...MEMBERS, PG_HAPROXY]
const PG_IMAGE = 'mayfly-patroni:local'
const BROKERS = ['rabbitmq-1', 'rabbitmq-2', 'rabbitmq-3']
const INFRA = [...PG_TIER, ...REDIS, ...SENTINELS, ...BROKERS]
/** what Mayfly's processes wait for: they reach Redis through the Sentinels, PostgreSQL at its members */
const DEPENDENCIES = [...MEMBERS, ...SENTINELS, ...BROKERS]
const GATEWAYS = ['gateway-1', 'gateway-2']
/** the gateways' HAProxy: the cluster's one address, as in the lab */
const BALANCER = 'gateway-balancer'
const NODES = ['storage-node1', 'storage-node2', 'storage-node3']
/** the Mayfly services that reach the infrastructure */
const INFRA_CLIENTS = [...GATEWAYS, 'worker', 'replicator']
const INFRA_URLS = ['MAYFLY_DATABASE_URL', 'MAYFLY_DATABASE_READ_URLS', 'MAYFLY_REDIS_URL', 'MAYFLY_REDIS_SENTINELS', 'MAYFLY_AMQP_URL']

interface Run { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { cwd: ROOT, env: opts.env ?? process.env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') return reject(err)
      resolve({ code: child.exitCode, stdout, stderr })
    })
    if (opts.input !== undefined) child.stdin?.end(opts.input)
  })
}

// ---------------------------------------------------------------- compose

/** docker-compose on PATH, or a failure that says how to get it. */
function findCompose(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'docker-compose')
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch { /* next */ }
  }
  assert.fail('docker-compose is not installed: run `sh scripts/install-system-deps.sh`')
}

/** The environment minus anything of the developer's that would change the result. */
function composeEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MAYFLY_') && !k.startsWith('COMPOSE_')))
  return { ...env, ...extra }
}

/** An empty env file: a developer's .env must not satisfy or change anything here. */
const scratch = mkdtempSync(join(tmpdir(), 'mayfly-docker-test-'))
const EMPTY_ENV_FILE = join(scratch, 'empty.env')
writeFileSync(EMPTY_ENV_FILE, '')
after(() => rmSync(scratch, { recursive: true, force: true }))

function compose(bin: string, args: string[], env: Record<string, string>): Promise<Run> {
  return run(bin, ['--env-file', EMPTY_ENV_FILE, '-f', 'docker-compose.yml', ...args], { env: composeEnv(env) })
}

interface Service {
  image?: string
  build?: unknown
  entrypoint?: string | string[]
  command?: string | string[]
  environment?: Record<string, string | number | null>
  ports?: (string | { host_ip?: string; published?: number | string; target?: number | string })[]
  volumes?: (string | { source?: string; target?: string })[]
  depends_on?: Record<string, { condition?: string }> | string[]
  healthcheck?: { test?: string | string[]; disable?: boolean }
  deploy?: { replicas?: number }
  hostname?: string
  networks?: Record<string, { ipv4_address?: string } | null> | string[]
}
interface ComposeFile {
  services: Record<string, Service>
  volumes?: Record<string, unknown>
  networks?: Record<string, { ipam?: { config?: { subnet?: string; ip_range?: string }[] } } | null>
}

/**
 * The fully interpolated configuration as an object. docker-compose v2 prints
 * JSON itself; 1.29 (Debian's) prints only YAML, so the Python that runs it
 * (which has PyYAML, its own dependency) turns that into JSON.
 */
async function resolvedCompose(bin: string, env: Record<string, string> = {}): Promise<ComposeFile> {
  const python = pythonOf(bin)
  if (python === undefined) {
    const out = await compose(bin, ['config', '--format', 'json'], { MAYFLY_CLUSTER_SECRET: SECRET, ...env })
    assert.equal(out.code, 0, out.stderr)
    return JSON.parse(out.stdout) as ComposeFile
  }
  const out = await compose(bin, ['config'], { MAYFLY_CLUSTER_SECRET: SECRET, ...env })
  assert.equal(out.code, 0, `docker-compose config failed:\n${out.stderr}`)
  const json = await run(python, ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], { input: out.stdout })
  assert.equal(json.code, 0, json.stderr)
  return JSON.parse(json.stdout) as ComposeFile
}

/** the python a script's #! line runs, if it is a python script */
function pythonOf(script: string): string | undefined {
  const head = readFileSync(script).subarray(0, 200).toString('latin1')
  return /^#!\s*(\S*python\S*)/.exec(head)?.[1]
}

function envOf(service: Service): Record<string, string> {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]))
}

function commandOf(service: Service): string[] {
  const c = service.command
  return c === undefined ? [] : Array.isArray(c) ? c : c.split(/\s+/).filter((s) => s !== '')
}

/** [host_ip:]published:target, as docker-compose 1.29 prints them (without its /tcp) or v2's objects */
function publishedPorts(service: Service): string[] {
  return (service.ports ?? []).map((p) =>
    typeof p === 'string' ? p.replace(/\/tcp$/, '') : `${p.host_ip === undefined ? '' : `${p.host_ip}:`}${p.published}:${p.target}`)
}

/** [source, mount point] of each volume, named or bind-mounted */
function mountsOf(service: Service): [string, string][] {
  return (service.volumes ?? []).flatMap((v) => {
    const [source, target] = typeof v === 'string' ? v.split(':') : [v.source, v.target]
    return source !== undefined && target !== undefined ? [[source, target] as [string, string]] : []
  })
}

/** named volume -> mount point */
function namedVolumes(service: Service): Map<string, string> {
  return new Map(mountsOf(service).filter(([source]) => !source.startsWith('/') && !source.startsWith('.')))
}

/** the file of this repository bind-mounted at `target` (docker-compose config prints absolute paths) */
function boundFile(service: Service, target: string): string {
  const source = mountsOf(service).find(([, t]) => t === target)?.[0]
  assert.ok(source !== undefined && source.startsWith(`${ROOT}/`), `a file of this repository is mounted at ${target}`)
  assert.ok(existsSync(source), `${source} exists`)
  return source
}

// ---------------------------------------------------------------- Dockerfile

interface Instruction { op: string; args: string }

/** Instructions with their continuation lines joined and comments dropped. */
function dockerfile(path = 'Dockerfile'): Instruction[] {
  const lines = readFileSync(join(ROOT, path), 'utf8').split('\n')
  const out: Instruction[] = []
  let pending = ''
  for (const line of lines) {
    if (/^\s*#/.test(line)) continue
    pending += line.replace(/\\\s*$/, ' ')
    if (/\\\s*$/.test(line)) continue
    const m = /^\s*(\w+)\s+(.*)$/.exec(pending)
    if (m !== null) out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim() })
    pending = ''
  }
  return out
}

/** exec form (a JSON array) or shell form split on spaces */
function argv(args: string): string[] {
  return args.startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/)
}

function dockerfileEnv(instructions: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {}
  for (const { args } of instructions.filter((i) => i.op === 'ENV')) {
    for (const m of args.matchAll(/(\w+)=("[^"]*"|\S*)/g)) env[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1')
  }
  return env
}

/** .dockerignore patterns (Docker's rule: a pattern also excludes everything under a matching directory). */
function ignoredBy(patterns: string[], path: string): string | undefined {
  const parts = path.split('/')
  for (const pattern of patterns) {
    for (let i = 1; i <= parts.length; i++) {
      if (matchesGlob(parts.slice(0, i).join('/'), pattern.replace(/^\/+|\/+$/g, ''))) return pattern
    }
  }
  return undefined
}

/** `path` and what is under it, relative to the build context */
function filesUnder(context: string, path: string): string[] {
  const abs = join(ROOT, context, path)
  if (!statSync(abs).isDirectory()) return [path]
  return readdirSync(abs, { recursive: true, encoding: 'utf8' }).map((f) => `${path}/${f}`)
}

/** the .dockerignore patterns of a build context (none without the file) */
function dockerignore(context: string): string[] {
  const file = join(ROOT, context, '.dockerignore')
  if (!existsSync(file)) return []
  const patterns = readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  assert.ok(patterns.every((p) => !p.startsWith('!')), `${file}: no exceptions: this check does not model them`)
  return patterns
}

/** Every COPY/ADD names a stage, or paths of the build context `context` that its .dockerignore lets through. */
function assertCopiesFit(instructions: Instruction[], context: string): void {
  const stages = instructions.filter((i) => i.op === 'FROM').map((i) => / AS (\S+)/i.exec(i.args)?.[1]).filter((s) => s !== undefined)
  const patterns = dockerignore(context)
  const copies = instructions.filter((i) => i.op === 'COPY' || i.op === 'ADD')
  assert.ok(copies.length > 0)
  for (const { args } of copies) {
    const words = argv(args)
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length)
    const paths = words.filter((w) => !w.startsWith('--'))
    const sources = paths.slice(0, -1)
    if (from !== undefined) {
      assert.ok(stages.includes(from), `COPY --from=${from} names a stage`)
      continue
    }
    for (const source of sources) {
      assert.ok(existsSync(join(ROOT, context, source)), `COPY ${source}: no such path in the build context ${context}`)
      for (const file of filesUnder(context, source.replace(/\/+$/, ''))) {
        const pattern = ignoredBy(patterns, file)
        assert.equal(pattern, undefined, `COPY ${source}: ${file} is excluded by .dockerignore's ${pattern}`)
      }
    }
  }
}

/** The file of the build context that a COPY puts at `dest` in the image. */
function copiedTo(instructions: Instruction[], context: string, dest: string): string {
  for (const { op, args } of instructions) {
    const paths = argv(args).filter((w) => !w.startsWith('--'))
    if (op === 'COPY' && paths.length === 2 && paths[1] === dest) return join(ROOT, context, paths[0]!)
  }
  assert.fail(`no COPY puts a file at ${dest}`)
}

const helpRuns = new Map<string, Promise<Run>>()

/** `mayfly <args>` exists: commander prints ITS usage (an unknown command prints the program's, also with exit 0). */
async function assertSubcommand(entrypoint: string[], args: string[]): Promise<void> {
  assert.deepEqual(entrypoint.slice(0, 2), ['node', 'src/main.ts'], 'ENTRYPOINT runs the CLI')
  const argv = [...entrypoint.slice(1), ...args, '--help']
  const key = argv.join(' ')
  if (!helpRuns.has(key)) helpRuns.set(key, run(NODE, argv))
  const out = await helpRuns.get(key)!
  assert.equal(out.code, 0, `mayfly ${args.join(' ')} --help: ${out.stderr}`)
  assert.match(out.stdout, new RegExp(`^Usage: mayfly ${args[0]} `, 'm'), `\`${args[0]}\` is not a mayfly command:\n${out.stdout}`)
}

const instructions = dockerfile()
const entrypoint = argv(instructions.findLast((i) => i.op === 'ENTRYPOINT')?.args ?? '[]')
const defaultCmd = argv(instructions.findLast((i) => i.op === 'CMD')?.args ?? '[]')

describe('Dockerfile', () => {
  test('builds in stages on the Node.js the project pins, Debian-based (sharp needs glibc)', () => {
    const froms = instructions.filter((i) => i.op === 'FROM').map((i) => i.args.split(/\s+/))
    assert.ok(froms.length >= 2, 'a build stage and a runtime stage')
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
    const major = /\d+/.exec(pkg.dependencies.node ?? '')?.[0]
    for (const from of froms) {
      const image = from.find((w) => !w.startsWith('--'))!
      assert.match(image, new RegExp(`^node:${major}-`), `${image}: Node.js ${major}, as package.json pins`)
      assert.doesNotMatch(image, /alpine/, `${image}: sharp's prebuilt binaries need glibc`)
    }
  })

  test('runs as a non-root user with a health check, the CLI as entrypoint and gateway by default', async () => {
    const user = instructions.findLast((i) => i.op === 'USER')?.args
    assert.ok(user !== undefined, 'a USER instruction')
    assert.doesNotMatch(user.split(':')[0]!, /^(root|0)$/, 'USER is not root')
    const health = instructions.findLast((i) => i.op === 'HEALTHCHECK')?.args
    assert.ok(health !== undefined && /\bCMD\b/.test(health), 'a HEALTHCHECK with a command')
    assert.deepEqual(defaultCmd, ['gateway'])
    await assertSubcommand(entrypoint, defaultCmd)
    const env = dockerfileEnv(instructions)
    assert.equal(env.MAYFLY_HOST, '0.0.0.0', 'reachable from outside the container')
    assert.equal(env.MAYFLY_DATA_DIR, '/data')
    assert.ok(instructions.some((i) => i.op === 'VOLUME' && i.args.includes('/data')), '/data is a volume')
  })

  test('copies only paths that exist and that .dockerignore lets through; keeps out node_modules, .git, data, .env', () => {
    assertCopiesFit(instructions, '.')
    const patterns = dockerignore('.')
    for (const path of ['node_modules/x', '.git/HEAD', 'data/node1', '.env']) {
      assert.ok(ignoredBy(patterns, path) !== undefined, `.dockerignore keeps ${path} out of the build context`)
    }
  })

  test("the HEALTHCHECK script asks /health on MAYFLY_PORT and exits 0 only on success", async () => {
    const health = argv(instructions.findLast((i) => i.op === 'HEALTHCHECK')!.args.replace(/^.*?\bCMD\s+/, ''))
    assert.equal(health[0], 'node')
    let status = 200
    const seen: string[] = []
    const server = createServer((req, res) => {
      seen.push(req.url ?? '')
      res.writeHead(status).end()
    })
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
    const port = (server.address() as AddressInfo).port
    const check = (p: number) => run(NODE, health.slice(1), { env: { ...process.env, MAYFLY_PORT: String(p) } })
    try {
      assert.equal((await check(port)).code, 0, 'healthy on 200')
      status = 503
      assert.equal((await check(port)).code, 1, 'unhealthy on 503')
    } finally {
      await new Promise((done) => server.close(done))
    }
    assert.equal((await check(port)).code, 1, 'unhealthy when nothing listens')
    assert.deepEqual(seen, ['/health', '/health'])
  })
})

// ---------------------------------------------------------------- the PostgreSQL tier's image

const PG_CONTEXT = 'docker/patroni'
const pgInstructions = dockerfile(`${PG_CONTEXT}/Dockerfile`)

describe(`${PG_CONTEXT}/Dockerfile`, () => {
  test("Debian bookworm's packages (PostgreSQL 15, Patroni, etcd, HAProxy, curl for the health checks), no default cluster, run as postgres", () => {
    assert.deepEqual(pgInstructions.filter((i) => i.op === 'FROM').map((i) => i.args), ['debian:bookworm-slim'])
    const runs = pgInstructions.filter((i) => i.op === 'RUN').map((i) => i.args)
    const installed = runs.flatMap((r) => [...r.matchAll(/apt-get install ([^&;|]*)/g)].flatMap((m) => m[1]!.split(/\s+/)))
    for (const pkg of ['postgresql-15', 'patroni', 'etcd-server', 'haproxy', 'curl']) assert.ok(installed.includes(pkg), `installs ${pkg}`)
    assert.ok(runs.some((r) => r.includes('create_main_cluster = false')), "Debian's own cluster is not created: Patroni runs initdb")
    assert.equal(pgInstructions.findLast((i) => i.op === 'USER')?.args, 'postgres', 'PostgreSQL refuses root')
  })

  test('copies only files of its build context', () => {
    assertCopiesFit(pgInstructions, PG_CONTEXT)
  })
})

interface Credentials { username?: string; password?: string }
/** the parts of Patroni's effective configuration checked here */
interface PatroniConfig {
  scope?: string
  name?: string
  restapi?: { listen?: string; connect_address?: string }
  etcd?: { hosts?: string | string[]; host?: string }
  etcd3?: unknown
  bootstrap?: {
    dcs?: { ttl?: number; loop_wait?: number; retry_timeout?: number; synchronous_mode?: boolean; primary_start_timeout?: number; postgresql?: { use_pg_rewind?: boolean } }
    initdb?: (string | Record<string, string>)[]
    post_init?: string
  }
  postgresql?: { listen?: string; connect_address?: string; data_dir?: string; authentication?: Record<string, Credentials>; pg_hba?: string[] }
}

/**
 * What Patroni makes of a member's config file with the member's
 * environment: Patroni's own loader (/usr/bin/patroni's python: Debian's, not
 * whichever is first on PATH) merges the PATRONI_* variables in. Not its
 * validator, which resolves hosts and binds ports.
 */
async function patroniConfig(file: string, env: Record<string, string>): Promise<PatroniConfig> {
  const bin = '/usr/bin/patroni'
  if (!existsSync(bin)) assert.fail('patroni is not installed: run `sh scripts/install-system-deps.sh`')
  const script = 'import json, sys; from patroni.config import Config; json.dump(Config(sys.argv[1], validator=None).copy(), sys.stdout, default=dict)'
  const out = await run(pythonOf(bin) ?? assert.fail(`${bin} is not a python script`), ['-c', script, file], { env })
  assert.equal(out.code, 0, `Patroni cannot read ${file}:\n${out.stderr}`)
  return JSON.parse(out.stdout) as PatroniConfig
}

/** "host:port" -> [host, port] */
function hostPort(address: string | undefined): [string, string] {
  const i = (address ?? '').lastIndexOf(':')
  assert.ok(i > 0, `${address} is host:port`)
  return [address!.slice(0, i), address!.slice(i + 1)]
}

/** a `--flag=value` or `--flag value` of a command */
function flag(command: string[], name: string): string | undefined {
  const i = command.findIndex((w) => w === name || w.startsWith(`${name}=`))
  return i < 0 ? undefined : command[i] === name ? command[i + 1] : command[i]!.slice(name.length + 1)
}

interface HaproxySection { head: string; lines: string[] }

/** sections (an unindented keyword line and the indented lines under it), comments dropped */
function haproxySections(text: string): HaproxySection[] {
  const sections: HaproxySection[] = []
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trimEnd()
    if (line.trim() === '') continue
    if (!/^\s/.test(line)) sections.push({ head: line, lines: [] })
    else sections.at(-1)?.lines.push(line.trim().replace(/\s+/g, ' '))
  }
  return sections
}

/** the port of HAProxy's one `frontend` */
function frontendPort(sections: HaproxySection[]): string {
  const fronts = sections.filter((sec) => sec.head.startsWith('frontend '))
  assert.equal(fronts.length, 1, 'one frontend')
  const port = fronts[0]!.lines.map((l) => /^bind \S*:(\d+)$/.exec(l)?.[1]).find((p) => p !== undefined)
  assert.ok(port !== undefined, 'the frontend binds a port')
  return port
}

/** `haproxy -c`: HAProxy itself accepts the file (names that do not resolve here are allowed by init-addr) */
async function assertHaproxyAccepts(file: string): Promise<void> {
  const bin = ['/usr/sbin/haproxy', ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'haproxy'))].find((b) => existsSync(b))
  if (bin === undefined) assert.fail('haproxy is not installed: run `sh scripts/install-system-deps.sh`')
  const out = await run(bin, ['-c', '-f', file])
  assert.equal(out.code, 0, `haproxy -c -f ${file}:\n${out.stderr}`)
}

/** an IPv4 address as a number */
function ipv4(address: string): number {
  const parts = address.split('.').map(Number)
  assert.ok(parts.length === 4 && parts.every((n) => Number.isInteger(n) && n >= 0 && n <= 255), `${address} is an IPv4 address`)
  return parts.reduce((a, n) => a * 256 + n, 0)
}

function inSubnet(address: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/')
  const size = 2 ** (32 - Number(bits))
  return Math.floor(ipv4(address) / size) === Math.floor(ipv4(base ?? '') / size)
}

/** RabbitMQ's rabbitmq.conf (sysctl format): key = value lines */
function rabbitmqConf(text: string): Map<string, string> {
  const settings = new Map<string, string>()
  for (const line of text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))) {
    const m = /^([\w.]+)\s*=\s*(.*)$/.exec(line)
    assert.ok(m !== null, `a key = value line: ${line}`)
    settings.set(m[1]!, m[2]!)
  }
  return settings
}

/**
 * A service's start script, as its container runs it: the entrypoint `sh -c`
 * and ONE argument (compose splits a string command into words, and sh -c
 * would run only the first), with compose's `$$` unescaped to `$`.
 */
function startScript(name: string, service: Service): string {
  assert.deepEqual(service.entrypoint, ['sh', '-c'], `${name} runs its script with sh -c`)
  assert.ok(Array.isArray(service.command) && service.command.length === 1,
    `${name}: the script is a list of one string (a string command is split into words, and sh -c would run only the first)`)
  return service.command[0]!.replaceAll('$$', '$')
}

/**
 * Runs a start script in a scratch directory: `mount` (a volume's mount
 * point in the container) moved to DIR/mount, and stand-ins on PATH for the
 * programs it runs, each recording its arguments in DIR/<program>.args.
 * `stubs` gives a stand-in's own shell body instead.
 */
async function runStartScript(script: string, mount: string, env: Record<string, string>, programs: string[], stubs: Record<string, string> = {}): Promise<{ dir: string; data: string; args: (program: string) => string[] | undefined }> {
  const dir = mkdtempSync(join(scratch, 'start-'))
  const bin = join(dir, 'bin')
  const data = join(dir, 'mount')
  mkdirSync(bin)
  mkdirSync(data)
  for (const program of programs) {
    const body = stubs[program] ?? `for a in "$@"; do printf '%s\\n' "$a"; done > "${dir}/${program}.args"`
    writeFileSync(join(bin, program), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  }
  const out = await run('sh', ['-c', script.replaceAll(`${mount}/`, `${data}/`)], { env: { PATH: `${bin}${delimiter}/usr/bin${delimiter}/bin`, ...env } })
  assert.equal(out.code, 0, `the start script failed:\n${out.stderr}`)
  const args = (program: string) => {
    const file = join(dir, `${program}.args`)
    return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(0, -1) : undefined
  }
  return { dir, data, args }
}

describe('docker-compose.yml', () => {
  let bin: string
  let file: ComposeFile
  let services: Record<string, Service>
  let mayfly: [string, Service][]

  let loading: Promise<void> | undefined
  /** Awaited by every test (not a `before` hook), so a missing docker-compose fails each test rather than cancelling it. */
  const load = () =>
    (loading ??= (async () => {
      bin = findCompose()
      file = await resolvedCompose(bin)
      services = file.services
      mayfly = Object.entries(services).filter(([, s]) => s.image === IMAGE)
    })())

  const memberConfigs = new Map<string, Promise<PatroniConfig>>()
  /** a member's config as Patroni reads it in its container: the baked file its command names, with its environment */
  const memberConfig = (name: string): Promise<PatroniConfig> => {
    if (!memberConfigs.has(name)) {
      memberConfigs.set(name, (async () => {
        await load()
        const s = services[name]!
        const command = s.command === undefined ? argv(pgInstructions.findLast((i) => i.op === 'CMD')?.args ?? '[]') : commandOf(s)
        assert.equal(command[0], 'patroni', `${name} runs Patroni`)
        assert.equal(command.length, 2, `${name}: patroni CONFIG`)
        return patroniConfig(copiedTo(pgInstructions, PG_CONTEXT, command[1]!), envOf(s))
      })())
    }
    return memberConfigs.get(name)!
  }
  const portOf = async (name: string, what: 'restapi' | 'postgresql') => hostPort((await memberConfig(name))[what]?.listen)[1]

  /** the etcd service's client port, from its command */
  const etcdClientPort = () => {
    const command = commandOf(services.etcd!)
    assert.equal(command[0], 'etcd')
    const advertised = new URL(flag(command, '--advertise-client-urls') ?? '')
    assert.equal(advertised.hostname, 'etcd', 'etcd advertises the url Patroni reaches it by')
    assert.equal(new URL(flag(command, '--listen-client-urls') ?? '').port, advertised.port, 'etcd listens where it says')
    assert.equal(flag(command, '--enable-v2'), 'true', 'etcd 3.4 serves the v2 API Patroni uses only when asked')
    return advertised.port
  }

  /** the group a Sentinel monitors, from the config its start script writes */
  const monitoredGroup = (sentinel: string) => {
    const m = /"sentinel monitor (\S+) (\S+) (\d+) (\d+)"/.exec(startScript(sentinel, services[sentinel]!))
    assert.ok(m !== null, `${sentinel} monitors a group`)
    return { name: m[1]!, host: m[2]!, port: m[3]!, quorum: Number(m[4]) }
  }

  /** the gateways' HAProxy config, the repository's file its command names */
  const balancerFile = () => {
    const command = commandOf(services[BALANCER]!)
    assert.equal(command[0], 'haproxy')
    return boundFile(services[BALANCER]!, flag(command, '-f') ?? '')
  }
  const balancerSections = () => haproxySections(readFileSync(balancerFile(), 'utf8'))

  test("parses, with the lab's topology: two gateways behind HAProxy, three storage nodes, two workers, two replicators, etcd with three Patroni members and HAProxy, Redis with three Sentinels, three RabbitMQ brokers", async () => {
    await load()
    assert.deepEqual(Object.keys(services).sort(), [BALANCER, ...GATEWAYS, ...INFRA, ...NODES, 'replicator', 'worker'].sort())
    assert.deepEqual(mayfly.map(([name]) => name).sort(), [...GATEWAYS, ...NODES, 'replicator', 'worker'].sort())
    for (const [name, s] of mayfly) assert.ok(s.build !== undefined, `${name} builds the image from this repository`)
    for (const name of [...PG_TIER, BALANCER]) {
      const { image, build } = services[name]!
      assert.equal(image, PG_IMAGE, `${name} runs the PostgreSQL tier's image`)
      const context = typeof build === 'string' ? build : (build as { context?: string } | undefined)?.context
      assert.equal(context, join(ROOT, PG_CONTEXT), `${name} builds it from ${PG_CONTEXT}`)
    }
    assert.ok(publishedPorts(services[PG_HAPROXY]!).includes('127.0.0.1:5432:5432'), "HAProxy is published on the host's loopback :5432, for operators")
    assert.ok(publishedPorts(services[BALANCER]!).includes('5000:5000'), "the gateways' HAProxy is published on :5000")
    for (const name of GATEWAYS) assert.deepEqual(publishedPorts(services[name]!), [], `${name} is reached through the balancer only`)
    assert.equal(services.worker!.deploy?.replicas, 2, 'two workers')
    assert.equal(services.replicator!.deploy?.replicas, 2, 'a replication manager and a standby')
  })

  test('will not start without a cluster secret, and says how to set it', async () => {
    await load()
    const out = await compose(bin, ['config', '-q'], {})
    assert.notEqual(out.code, 0)
    assert.match(out.stderr, /set MAYFLY_CLUSTER_SECRET/)
  })

  test('every Mayfly service runs a real `mayfly` command', async () => {
    await load()
    const commands = new Set(mayfly.map(([, s]) => commandOf(s).join(' ') || defaultCmd.join(' ')))
    assert.deepEqual([...commands].sort(), ['gateway', 'replicator', 'storage-node', 'worker'])
    await Promise.all([...commands].map((c) => assertSubcommand(entrypoint, c.split(' '))))
    // the check itself can tell a command from a typo
    await assert.rejects(assertSubcommand(entrypoint, ['storage-nodes']), /is not a mayfly command/)
  })

  test("every Mayfly service's environment passes the config schema and shares the secret", async () => {
    await load()
    const base = dockerfileEnv(instructions)
    for (const [name, s] of mayfly) {
      const env = { ...base, ...envOf(s) }
      assert.doesNotThrow(() => loadConfig(env), `${name}'s environment`)
      assert.equal(env.MAYFLY_CLUSTER_SECRET, SECRET, `${name} gets the cluster secret`)
    }
  })

  test("storage nodes: own port, zone and volume, reachable at their service name, announcing to the gateways' HAProxy, no infrastructure credentials", async () => {
    await load()
    const balancerPort = frontendPort(balancerSections())
    const zones = new Set<string>()
    const volumes = new Set<string>()
    for (const name of NODES) {
      const s = services[name]!
      const env = envOf(s)
      assert.deepEqual(commandOf(s), ['storage-node'], name)
      assert.ok(env.MAYFLY_PORT !== undefined, `${name} sets MAYFLY_PORT (the image's health check reads it)`)
      assert.equal(env.MAYFLY_ADVERTISE_URL, `http://${name}:${env.MAYFLY_PORT}`, `${name} advertises the url others reach it by`)
      assert.equal(env.MAYFLY_CONTROL_URL, `http://${BALANCER}:${balancerPort}`, `${name} announces itself and heartbeats to the gateways' HAProxy, as in the lab`)
      for (const key of INFRA_URLS) assert.equal(env[key], undefined, `${name} holds no ${key} (DESIGN §1)`)
      zones.add(env.MAYFLY_ZONE ?? 'default')
      const mounts = [...namedVolumes(s)].filter(([, target]) => target === '/data').map(([source]) => source)
      assert.equal(mounts.length, 1, `${name} keeps its blobs in a named volume at /data`)
      volumes.add(mounts[0]!)
      assert.ok(file.volumes?.[mounts[0]!] !== undefined, `${mounts[0]} is declared`)
    }
    assert.deepEqual([...zones].sort(), ['a', 'b', 'c'])
    assert.equal(volumes.size, NODES.length, 'no two nodes share a volume')
  })

  test('gateways, workers and replicators reach every Patroni member, the Sentinels and every RabbitMQ broker with their credentials, once those are healthy', async () => {
    await load()
    const brokerUsers = new Set(BROKERS.map((b) => `${envOf(services[b]!).RABBITMQ_DEFAULT_USER}:${envOf(services[b]!).RABBITMQ_DEFAULT_PASS}`))
    assert.equal(brokerUsers.size, 1, 'every broker has the same default user: any of them may form the cluster')
    const mq = envOf(services[BROKERS[0]!]!)
    // the role, database and password that post-init.sh creates on the member that bootstraps the cluster
    const postInit = (await memberConfig(MEMBERS[0]!)).bootstrap?.post_init?.split(/\s+/) ?? []
    const script = readFileSync(copiedTo(pgInstructions, PG_CONTEXT, postInit.at(-1) ?? ''), 'utf8')
    const user = /CREATE ROLE (\w+)/.exec(script)?.[1]
    const psqlVar = new RegExp(`ALTER ROLE ${user} LOGIN PASSWORD :'(\\w+)'`).exec(script)?.[1]
    const passwordVar = new RegExp(`-v ${psqlVar}="\\$\\{?(\\w+)\\}?"`).exec(script)?.[1]
    const [, database, owner] = /CREATE DATABASE (\w+) OWNER (\w+)/.exec(script) ?? []
    assert.ok(user !== undefined && passwordVar !== undefined && database !== undefined, 'post-init.sh creates a role with a password from the environment, and a database')
    assert.equal(owner, user, 'the role owns its database (Mayfly runs its migrations)')
    const passwords = new Set(MEMBERS.map((m) => envOf(services[m]!)[passwordVar]))
    assert.equal(passwords.size, 1, `every member has the same ${passwordVar}: any of them may bootstrap`)
    const password = [...passwords][0]
    assert.ok(password !== undefined && password !== '', `${passwordVar} is set`)
    const addresses = await Promise.all(MEMBERS.map(async (m) => `${m}:${await portOf(m, 'postgresql')}`))
    for (const name of INFRA_CLIENTS) {
      const s = services[name]!
      const env = envOf(s)
      const members = splitPostgresUrl(env.MAYFLY_DATABASE_URL ?? '').map((u) => new URL(u))
      assert.deepEqual(members.map((u) => `${u.hostname}:${u.port || '5432'}`), addresses, `${name}: MAYFLY_DATABASE_URL names every member`)
      for (const db of members) {
        assert.equal(decodeURIComponent(db.username), user, `${name}: the role post-init.sh creates`)
        assert.equal(decodeURIComponent(db.password), password, `${name}: the password post-init.sh gives it`)
        assert.equal(db.pathname, `/${database}`, `${name}: the database post-init.sh creates`)
      }
      assert.equal(env.MAYFLY_REDIS_URL, undefined, `${name}: no single Redis url`)
      assert.deepEqual(env.MAYFLY_REDIS_SENTINELS?.split(','), SENTINELS.map((h) => `${h}:26379`), `${name}: every Sentinel`)
      for (const sentinel of SENTINELS) assert.equal(env.MAYFLY_REDIS_MASTER_NAME, monitoredGroup(sentinel).name, `${name}: MAYFLY_REDIS_MASTER_NAME is the group ${sentinel} monitors`)
      // DESIGN §6: the brokers of one cluster, comma-separated
      const brokers = (env.MAYFLY_AMQP_URL ?? '').split(',').map((u) => new URL(u.trim()))
      assert.deepEqual(brokers.map((u) => `${u.hostname}:${u.port || '5672'}`), BROKERS.map((b) => `${b}:5672`), `${name}: MAYFLY_AMQP_URL names the three brokers`)
      for (const amqp of brokers) {
        assert.equal(amqp.protocol, 'amqp:')
        assert.equal(decodeURIComponent(amqp.username), mq.RABBITMQ_DEFAULT_USER, 'not guest: RabbitMQ refuses guest from other hosts')
        assert.equal(decodeURIComponent(amqp.password), mq.RABBITMQ_DEFAULT_PASS)
      }
      const deps = s.depends_on
      assert.ok(deps !== undefined && !Array.isArray(deps), `${name} waits for its dependencies`)
      for (const dep of DEPENDENCIES) assert.equal(deps[dep]?.condition, 'service_healthy', `${name} waits for ${dep} to be healthy`)
    }
  })

  test('Patroni members: one scope, each its own name, connect addresses and volume; synchronous, failing over on a postmaster kill, the v2 API of etcd at the etcd service', async () => {
    await load()
    const configs = await Promise.all(MEMBERS.map(memberConfig))
    const etcd = `etcd:${etcdClientPort()}`
    const volumes = new Set<string>()
    for (const [i, name] of MEMBERS.entries()) {
      const c = configs[i]!
      assert.equal(c.scope, configs[0]!.scope, `${name} is in the one cluster`)
      assert.equal(c.name, name, `${name}: PATRONI_NAME`)
      assert.equal(c.restapi?.connect_address, `${name}:${hostPort(c.restapi?.listen)[1]}`, `${name}: the others and HAProxy reach its REST API by its service name`)
      assert.equal(c.postgresql?.connect_address, `${name}:${hostPort(c.postgresql?.listen)[1]}`, `${name}: replicas stream from it by its service name`)
      // Patroni 3.0.2's etcd3 client renews the leader key without a compare: a frozen leader that woke took it back
      assert.equal(c.etcd3, undefined, `${name}: no etcd3 section, Patroni renews the leader key by compare-and-swap over v2`)
      const hosts = [c.etcd?.hosts ?? c.etcd?.host ?? []].flat().flatMap((h) => h.split(',')).map((h) => h.trim())
      assert.deepEqual(hosts, [etcd], `${name}: Patroni's etcd section names the etcd service`)
      // the settings scripts/patroni-ha.sh runs, which the failover tests measured
      const dcs = c.bootstrap?.dcs
      assert.equal(dcs?.synchronous_mode, true, `${name}: synchronous_mode (no acknowledged commit lost with a Patroni kill)`)
      assert.equal(dcs?.primary_start_timeout, 0, `${name}: a killed postmaster fails over rather than restarting in place`)
      assert.deepEqual([dcs?.ttl, dcs?.loop_wait, dcs?.retry_timeout], [10, 2, 4], `${name}: ttl, loop_wait, retry_timeout`)
      assert.equal(dcs?.postgresql?.use_pg_rewind, true, `${name}: an old primary rejoins by pg_rewind`)
      assert.ok(c.bootstrap?.initdb?.includes('data-checksums'), `${name}: data checksums`)
      // credentials: the same on every member (each connects to the others with its own)
      for (const role of ['superuser', 'replication']) {
        const auth: Credentials | undefined = c.postgresql?.authentication?.[role]
        assert.ok(auth?.username !== undefined && (auth.password ?? '') !== '', `${name}: the ${role}'s name and password`)
        assert.deepEqual(auth, configs[0]!.postgresql?.authentication?.[role], `${name}: the same ${role} as ${MEMBERS[0]}`)
      }
      const hba = (c.postgresql?.pg_hba ?? []).map((l) => l.trim().split(/\s+/))
      assert.ok(hba.length > 0, `${name}: its own pg_hba lines`)
      for (const line of hba) {
        const method = line[0] === 'local' ? line[3] : line[4]
        if (line[0] === 'local') assert.match(method ?? '', /^(peer|scram-sha-256)$/, `${name}: ${line.join(' ')}`)
        else assert.equal(method, 'scram-sha-256', `${name}: passwords over the network, not trust: ${line.join(' ')}`)
      }
      const replicator = c.postgresql?.authentication?.replication?.username
      assert.ok(hba.some((l) => l[0]!.startsWith('host') && l[1] === 'replication' && [replicator, 'all'].includes(l[2])), `${name}: replicas may stream`)
      // its data in its own volume, in a directory below the mount point (Patroni may remove and recreate it)
      const dataDir = c.postgresql?.data_dir ?? ''
      const mounts = [...namedVolumes(services[name]!)].filter(([, target]) => dataDir.startsWith(`${target}/`))
      assert.equal(mounts.length, 1, `${name} keeps ${dataDir} in a named volume`)
      assert.ok(file.volumes?.[mounts[0]![0]] !== undefined, `${mounts[0]![0]} is declared`)
      volumes.add(mounts[0]![0])
    }
    assert.equal(volumes.size, MEMBERS.length, 'no two members share a volume')
    const etcdData = flag(commandOf(services.etcd!), '--data-dir') ?? ''
    assert.ok([...namedVolumes(services.etcd!)].some(([, target]) => etcdData.startsWith(`${target}/`)), `etcd keeps ${etcdData} in a named volume`)
    for (const name of MEMBERS) assert.equal((services[name]!.depends_on as Record<string, { condition?: string }> | undefined)?.etcd?.condition, 'service_healthy', `${name} starts once etcd answers`)
  })

  test("PostgreSQL's HAProxy: each member is in only while its Patroni REST port answers GET /primary with 200, checked every second, its sessions cut when it goes out; HAProxy accepts the file", async () => {
    await load()
    const command = commandOf(services[PG_HAPROXY]!)
    assert.equal(command[0], 'haproxy')
    const cfg = copiedTo(pgInstructions, PG_CONTEXT, flag(command, '-f') ?? '')
    await assertHaproxyAccepts(cfg)
    const sections = haproxySections(readFileSync(cfg, 'utf8'))
    const published = (publishedPorts(services[PG_HAPROXY]!).find((p) => p.startsWith('127.0.0.1:5432:')) ?? assert.fail('published on 127.0.0.1:5432')).split(':').at(-1)
    const front = sections.find((sec) => sec.lines.some((l) => new RegExp(`^bind \\S*:${published}$`).test(l)))
    assert.ok(front !== undefined, `a section binds :${published}`)
    const [kind, proxy] = front.head.split(/\s+/)
    assert.equal(kind, 'listen', 'it holds the servers itself')
    const defaults = sections.filter((sec) => sec.head.startsWith('defaults')).flatMap((sec) => sec.lines)
    const lines = [...defaults, ...front.lines]
    assert.equal(lines.findLast((l) => l.startsWith('mode '))?.split(' ')[1], 'tcp', 'PostgreSQL is TCP')
    assert.ok(lines.includes('option httpchk GET /primary'), "checks Patroni's GET /primary")
    assert.ok(lines.includes('http-check expect status 200'), 'a member is in on 200 alone')
    const defaultServer = lines.findLast((l) => l.startsWith('default-server '))?.split(' ') ?? []
    const option = (name: string) => defaultServer[defaultServer.indexOf(name) + 1]
    assert.deepEqual([option('inter'), option('fall'), option('rise'), option('on-marked-down')], ['1s', '2', '1', 'shutdown-sessions'],
      'checked every second, out after 2 failures, in after 1, and a member that goes out loses its sessions (or clients stay on an old primary)')
    const servers = front.lines.filter((l) => l.startsWith('server ')).map((l) => l.split(' '))
    const expected = await Promise.all(MEMBERS.map(async (m) => [`${m}:${await portOf(m, 'postgresql')}`, await portOf(m, 'restapi')]))
    assert.deepEqual(servers.map((w) => [w[2], w[w.indexOf('port') + 1]]).sort(), expected.sort(), "every member, checked on its Patroni REST port")
    for (const w of servers) assert.ok(w.includes('check'), `${w[1]} is checked`)
    // its own health: some member is the primary
    const monitor = sections.find((sec) => sec.lines.some((l) => l.startsWith('monitor-uri ')))
    assert.ok(monitor?.lines.includes(`monitor fail if { nbsrv(${proxy}) lt 1 }`), 'its monitor page fails while no member is in')
  })

  test('Redis: a master and two replicas without persistence; a node that starts joins the master the Sentinels name, redis-1 is the master only when none answers', async () => {
    await load()
    const group = monitoredGroup(SENTINELS[0]!).name
    // a stand-in redis-cli answers SENTINEL get-master-addr-by-name with $MASTER (none when empty)
    const sentinelAnswers = `[ "$*" = "-h sentinel-1 -p 26379 SENTINEL get-master-addr-by-name ${group}" ] && [ -n "$MASTER" ] && printf '%s\\n6379\\n' "$MASTER"`
    /** the arguments redis-server starts with */
    const start = async (name: string, master: string) => {
      const ran = await runStartScript(startScript(name, services[name]!), '/data', { ...envOf(services[name]!), MASTER: master }, ['redis-server', 'redis-cli'], { 'redis-cli': sentinelAnswers })
      return ran.args('redis-server') ?? assert.fail(`${name} did not exec redis-server`)
    }
    const keepsNothing = ['--save', '', '--appendonly', 'no']
    for (const name of REDIS) {
      assert.equal(envOf(services[name]!).ME, name, `${name} announces its service name`)
      const alone = await start(name, '')
      assert.deepEqual(alone.slice(0, 4), keepsNothing, `${name} runs redis-server, keeping nothing`)
      assert.deepEqual(alone.slice(4), ['--replica-announce-ip', name, ...(name === REDIS[0] ? [] : ['--replicaof', REDIS[0]!, '6379'])],
        `${name}, no Sentinel answering (the first start): ${name === REDIS[0] ? 'the master' : `a replica of ${REDIS[0]}`}`)
      const other = REDIS.find((r) => r !== name)!
      assert.deepEqual((await start(name, other)).slice(4), ['--replica-announce-ip', name, '--replicaof', other, '6379'],
        `${name} joins ${other}, the master the Sentinels name: a restarted master never comes back as an empty master`)
      assert.deepEqual((await start(name, name)).slice(4), ['--replica-announce-ip', name], `${name}, named master by the Sentinels, stays master`)
    }
  })

  test("Sentinels: three, monitoring redis-1 under MAYFLY_REDIS_MASTER_NAME with a quorum of 2; each writes its config into its volume once and keeps what it rewrote", async () => {
    await load()
    const masterName = envOf(services[GATEWAYS[0]!]!).MAYFLY_REDIS_MASTER_NAME
    for (const name of SENTINELS) {
      const s = services[name]!
      const group = monitoredGroup(name)
      assert.deepEqual(group, { name: masterName, host: REDIS[0], port: '6379', quorum: 2 }, `${name} monitors ${masterName} at ${REDIS[0]}, a failover needs 2 of 3`)
      assert.ok([...namedVolumes(s)].some(([, target]) => target === '/data'), `${name} keeps its config in a volume at /data`)
      for (const redis of REDIS) assert.ok(startScript(redis, services[redis]!).includes(`get-master-addr-by-name ${group.name} `), `${redis} asks the Sentinels for the group they monitor`)
      const first = await runStartScript(startScript(name, s), '/data', envOf(s), ['redis-sentinel'])
      const conf = join(first.data, 'sentinel.conf')
      assert.deepEqual(first.args('redis-sentinel'), [conf], `${name} runs redis-sentinel on the config in its volume (Sentinel rewrites it)`)
      const lines = readFileSync(conf, 'utf8').split('\n')
      for (const line of [`sentinel monitor ${masterName} ${REDIS[0]} 6379 2`, `sentinel announce-ip ${name}`, 'sentinel resolve-hostnames yes', 'sentinel announce-hostnames yes']) {
        assert.ok(lines.includes(line), `${name}'s config has "${line}"`)
      }
      // what Sentinel rewrote (a failover to redis-2) survives a restart
      const rewritten = readFileSync(conf, 'utf8').replace(`monitor ${masterName} ${REDIS[0]} `, `monitor ${masterName} ${REDIS[1]} `)
      writeFileSync(conf, rewritten)
      const again = await run('sh', ['-c', startScript(name, s).replaceAll('/data/', `${first.data}/`)], { env: { PATH: `${join(first.dir, 'bin')}${delimiter}/usr/bin${delimiter}/bin`, ...envOf(s) } })
      assert.equal(again.code, 0, again.stderr)
      assert.equal(readFileSync(conf, 'utf8'), rewritten, `${name} keeps the config it rewrote across restarts`)
    }
  })

  test("the gateways' HAProxy: what `mayfly lab` runs for gateway-1 and gateway-2 (gatewayBalancerConfig), line for line, plus only Docker's DNS, logs and health page; HAProxy accepts it", async () => {
    await load()
    await assertHaproxyAccepts(balancerFile())
    assert.ok(readFileSync(balancerFile(), 'utf8') === composeGatewayBalancerConfig(),
      `${balancerFile()} is not what docker/gateway-balancer/generate.ts makes of gatewayBalancerConfig (src/cli/lab/gateway-balancer.ts changed?): run \`npx node docker/gateway-balancer/generate.ts\``)
    const actual = balancerSections()
    const published = publishedPorts(services[BALANCER]!).find((p) => /^\d+:\d+$/.test(p)) ?? assert.fail('the balancer is published on every interface')
    const gateways = GATEWAYS.map((name) => ({ name, host: name, port: Number(envOf(services[name]!).MAYFLY_PORT) }))
    assert.deepEqual(COMPOSE_GATEWAYS, gateways, 'the generator names the gateway services, each on its MAYFLY_PORT')
    assert.equal(String(COMPOSE_LISTEN.port), published.split(':')[1], 'the generator listens on the port compose publishes')
    // and, apart from the generator, the file holds every line of the lab's config, in its order
    const expected = haproxySections(gatewayBalancerConfig({ listen: { host: '', port: Number(published.split(':')[1]) }, gateways }))
    // beside the lab's lines, Docker's own, in defaults only: logs to stdout, and every
    // gateway's name looked up again through Docker's DNS (a recreated container has a new address)
    const dockerOnly = [/^log stdout /, /^option dontlog-normal$/, /^default-server resolvers docker init-addr \S*none$/]
    for (const want of expected) {
      const have = actual.find((sec) => sec.head === want.head) ?? assert.fail(`no section "${want.head}" (gatewayBalancerConfig has it)`)
      let matched = 0
      const extra: string[] = []
      for (const line of have.lines) {
        if (line === want.lines[matched]) matched++
        else extra.push(line)
      }
      assert.equal(matched, want.lines.length, `${want.head}: "${want.lines[matched]}" (gatewayBalancerConfig's, in its order) is missing`)
      for (const line of extra) {
        assert.ok(want.head === 'defaults' && dockerOnly.some((re) => re.test(line)), `${want.head}: "${line}" is not gatewayBalancerConfig's`)
      }
    }
    const defaults = actual.find((sec) => sec.head === 'defaults')!.lines
    assert.ok(defaults.some((l) => l.startsWith('default-server resolvers docker ')), "every server is resolved again through Docker's DNS")
    assert.ok(actual.find((sec) => sec.head === 'resolvers docker')?.lines.some((l) => /^nameserver \S+ 127\.0\.0\.11:53$/.test(l)), "the resolvers section asks Docker's DNS (127.0.0.11)")
    const others = actual.filter((sec) => !expected.some((e) => e.head === sec.head)).map((sec) => sec.head)
    assert.deepEqual(others.sort(), ['listen health', 'resolvers docker'], 'no other sections')
    // its own health: some gateway takes users' requests; published on loopback, where the health check asks
    const health = actual.find((sec) => sec.head === 'listen health')!.lines
    const ready = actual.find((sec) => sec.head.startsWith('backend ') && sec.lines.includes('option httpchk GET /ready'))?.head.split(' ')[1]
    assert.ok(ready !== undefined && health.includes(`monitor fail if { nbsrv(${ready}) lt 1 }`), 'its health page fails while no gateway is ready')
    const healthPort = health.map((l) => /^bind \S*:(\d+)$/.exec(l)?.[1]).find((p) => p !== undefined)
    const check = services[BALANCER]!.healthcheck?.test
    assert.match(Array.isArray(check) ? check.join(' ') : check ?? '', new RegExp(`^CMD curl -f\\S* .*http://127\\.0\\.0\\.1:${healthPort}/health$`), 'the health check asks its health page')
    assert.ok(publishedPorts(services[BALANCER]!).includes(`127.0.0.1:${healthPort}:${healthPort}`), "its page is published on the host's loopback")
    const deps = services[BALANCER]!.depends_on
    assert.deepEqual((Array.isArray(deps) ? deps : Object.keys(deps ?? {})).sort(), GATEWAYS, 'it starts after the gateways')
  })

  test('gateways: each heartbeats under its own service url and believes X-Forwarded-For from the balancer alone, at its fixed address on the compose network, outside the range Docker hands out; one variable moves them together', async () => {
    await load()
    const check = (f: ComposeFile, prefix: string) => {
      const ipam = f.networks?.default?.ipam?.config ?? []
      assert.equal(ipam.length, 1, 'the default network has one subnet')
      const { subnet, ip_range: range } = ipam[0]!
      assert.ok(subnet !== undefined && range !== undefined, 'a subnet and the range Docker hands out')
      assert.equal(subnet, `${prefix}.0/24`)
      const networks = f.services[BALANCER]!.networks
      assert.ok(networks !== undefined && !Array.isArray(networks), 'the balancer names its address')
      assert.deepEqual(Object.keys(networks), ['default'], 'on the one network of the compose file')
      const address = networks.default?.ipv4_address ?? assert.fail('the balancer has a fixed address')
      assert.ok(inSubnet(address, subnet), `${address} is in ${subnet}`)
      assert.ok(inSubnet(range.split('/')[0]!, subnet), `${range} is in ${subnet}`)
      assert.ok(!inSubnet(address, range), `${address} is outside ${range}, so no other container can take it`)
      for (const name of GATEWAYS) {
        const env = envOf(f.services[name]!)
        assert.equal(env.MAYFLY_TRUSTED_PROXIES, address, `${name} believes X-Forwarded-For from the balancer alone (rate limits per client)`)
        assert.equal(env.MAYFLY_ADVERTISE_URL, `http://${name}:${env.MAYFLY_PORT}`, `${name} heartbeats under the url the balancer reaches it by`)
      }
      for (const [name, svc] of Object.entries(f.services)) {
        if (name !== BALANCER) assert.ok(svc.networks === undefined || Object.keys(svc.networks).join() === 'default', `${name} is on the default network`)
      }
    }
    check(file, '10.207.0')
    const moved = await resolvedCompose(bin, { MAYFLY_DOCKER_NETWORK: '10.99.1' })
    check(moved, '10.99.1')
  })

  test('RabbitMQ: three brokers of one cluster, each named by its service (hostname) with its own volume; the peer list names all three; one Erlang cookie; pause_minority', async () => {
    await load()
    const volumes = new Set<string>()
    const confs = new Set<string>()
    const cookies = new Set<string>()
    for (const name of BROKERS) {
      const s = services[name]!
      assert.equal(s.hostname, name, `${name}: its node name, rabbit@${name}, follows the hostname, and so does where it keeps its data`)
      const data = [...namedVolumes(s)].filter(([, target]) => target === '/var/lib/rabbitmq').map(([volume]) => volume)
      assert.equal(data.length, 1, `${name} keeps /var/lib/rabbitmq in a named volume`)
      assert.ok(file.volumes?.[data[0]!] !== undefined, `${data[0]} is declared`)
      volumes.add(data[0]!)
      const target = mountsOf(s).map(([, t]) => t).find((t) => /^\/etc\/rabbitmq\/conf\.d\/[^/]+\.conf$/.test(t)) ?? assert.fail(`${name} gets a config in /etc/rabbitmq/conf.d`)
      confs.add(boundFile(s, target))
      cookies.add(envOf(s).ERLANG_COOKIE ?? '')
    }
    assert.equal(volumes.size, BROKERS.length, 'no two brokers share a volume')
    assert.equal(confs.size, 1, 'one cluster config for every broker')
    assert.equal(cookies.size, 1, 'one Erlang cookie: brokers authenticate to each other with it')
    assert.notEqual([...cookies][0], '', 'the cookie is set')
    const settings = rabbitmqConf(readFileSync([...confs][0]!, 'utf8'))
    assert.equal(settings.get('cluster_formation.peer_discovery_backend'), 'classic_config')
    const peers = [...settings].filter(([key]) => /^cluster_formation\.classic_config\.nodes\.\d+$/.test(key)).map(([, node]) => node)
    assert.deepEqual(peers.sort(), BROKERS.map((b) => `rabbit@${b}`).sort(), 'the peer list names every broker by its node name')
    const lookingMs = Number(settings.get('cluster_formation.discovery_retry_limit')) * Number(settings.get('cluster_formation.discovery_retry_interval'))
    assert.ok(lookingMs >= 30_000, `a broker looks for the others ${lookingMs} ms before starting alone: long enough for containers that boot at different speeds`)
    assert.equal(settings.get('cluster_partition_handling'), 'pause_minority', 'a broker cut off from the other two stops rather than going on alone')
    assert.ok(publishedPorts(services[BROKERS[0]!]!).includes('127.0.0.1:15672:15672'), "the management UI on the host's loopback")
  })

  test("a broker's start writes the shared cookie into its data volume, readable by its owner alone, then hands over to the image's entrypoint", async () => {
    await load()
    for (const name of BROKERS) {
      const s = services[name]!
      const env = envOf(s)
      const ran = await runStartScript(startScript(name, s), '/var/lib/rabbitmq', env, ['docker-entrypoint.sh'])
      assert.deepEqual(ran.args('docker-entrypoint.sh'), ['rabbitmq-server'], `${name} execs the image's entrypoint with rabbitmq-server`)
      // the rabbitmq user's HOME (the image's), where the broker and the health check's CLI read it
      const cookie = join(ran.data, '.erlang.cookie')
      assert.equal(readFileSync(cookie, 'utf8'), env.ERLANG_COOKIE, `${name} writes the cookie, exactly`)
      assert.equal(statSync(cookie).mode & 0o077, 0, 'Erlang refuses a cookie others may read')
    }
  })

  test('health checks: each infrastructure service has one; workers and replicators, which serve no HTTP, turn off the image\'s', async () => {
    await load()
    // curl -f: an HTTP error status is a failure (Patroni's /health answers 503 while its PostgreSQL is down)
    const probes: Record<string, RegExp> = { etcd: new RegExp(`^CMD curl -f\\S* .*http://127\\.0\\.0\\.1:${etcdClientPort()}/health$`) }
    for (const name of MEMBERS) probes[name] = new RegExp(`^CMD curl -f\\S* .*http://127\\.0\\.0\\.1:${await portOf(name, 'restapi')}/health$`)
    probes[PG_HAPROXY] = /^CMD curl -f\S* .*http:\/\/127\.0\.0\.1:\d+\/health$/
    // the broker's rabbit application runs (booted, and joined or formed the cluster), not only its Erlang VM
    for (const name of BROKERS) probes[name] = /^CMD rabbitmq-diagnostics -q check_running$/
    for (const name of REDIS) probes[name] = /redis-cli ping/
    for (const name of SENTINELS) probes[name] = /redis-cli -p 26379 ping/
    for (const [name, probe] of Object.entries(probes)) {
      const check = services[name]!.healthcheck?.test
      assert.ok(check !== undefined, `${name} has a health check`)
      assert.match(Array.isArray(check) ? check.join(' ') : check, probe, name)
    }
    for (const name of ['etcd', ...MEMBERS, ...BROKERS]) assert.ok(namedVolumes(services[name]!).size > 0, `${name} keeps its data in a volume`)
    for (const name of ['worker', 'replicator']) {
      const check = services[name]!.healthcheck
      assert.ok(check?.disable === true || (Array.isArray(check?.test) && check.test[0] === 'NONE'), `${name} health check disabled`)
    }
  })
})
