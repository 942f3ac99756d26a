// Docker packaging (Dockerfile, .dockerignore, docker-compose.yml), checked
// without a Docker engine (DESIGN §8): docker-compose parses and interpolates
// the compose file, the CLI says whether each service's command exists, the
// app's own config schema judges each service's environment, and the
// Dockerfile's health check script runs against a local HTTP server.
import { after, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join, matchesGlob } from 'node:path'
import { loadConfig } from '../../src/config.ts'

const ROOT = join(import.meta.dirname, '../..')
const NODE = join(ROOT, 'node_modules/.bin/node')
const SECRET = 'docker-test-secret-0123456789'
const IMAGE = 'mayfly:local'
const REDIS = ['redis-1', 'redis-2', 'redis-3']
const SENTINELS = ['sentinel-1', 'sentinel-2', 'sentinel-3']
const INFRA = ['postgres', ...REDIS, ...SENTINELS, 'rabbitmq']
/** what Mayfly's processes wait for: they reach Redis through the Sentinels */
const DEPENDENCIES = ['postgres', ...SENTINELS, 'rabbitmq']
const NODES = ['storage-node1', 'storage-node2', 'storage-node3']
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
  command?: string | string[]
  environment?: Record<string, string | number | null>
  ports?: (string | { published?: number | string; target?: number | string })[]
  volumes?: (string | { source?: string; target?: string })[]
  depends_on?: Record<string, { condition?: string }> | string[]
  healthcheck?: { test?: string | string[]; disable?: boolean }
  deploy?: { replicas?: number }
  hostname?: string
}
interface ComposeFile { services: Record<string, Service>; volumes?: Record<string, unknown> }

/**
 * The fully interpolated configuration as an object. docker-compose v2 prints
 * JSON itself; 1.29 (Debian's) prints only YAML, so the Python that runs it
 * (which has PyYAML, its own dependency) turns that into JSON.
 */
async function resolvedCompose(bin: string): Promise<ComposeFile> {
  const head = readFileSync(bin).subarray(0, 200).toString('latin1')
  const python = /^#!\s*(\S*python\S*)/.exec(head)?.[1]
  if (python === undefined) {
    const out = await compose(bin, ['config', '--format', 'json'], { MAYFLY_CLUSTER_SECRET: SECRET })
    assert.equal(out.code, 0, out.stderr)
    return JSON.parse(out.stdout) as ComposeFile
  }
  const out = await compose(bin, ['config'], { MAYFLY_CLUSTER_SECRET: SECRET })
  assert.equal(out.code, 0, `docker-compose config failed:\n${out.stderr}`)
  const json = await run(python, ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], { input: out.stdout })
  assert.equal(json.code, 0, json.stderr)
  return JSON.parse(json.stdout) as ComposeFile
}

function envOf(service: Service): Record<string, string> {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]))
}

function commandOf(service: Service): string[] {
  const c = service.command
  return c === undefined ? [] : Array.isArray(c) ? c : c.split(/\s+/).filter((s) => s !== '')
}

function publishedPorts(service: Service): string[] {
  return (service.ports ?? []).map((p) => (typeof p === 'string' ? p : `${p.published}:${p.target}`))
}

/** named volume -> mount point */
function namedVolumes(service: Service): Map<string, string> {
  const mounts = new Map<string, string>()
  for (const v of service.volumes ?? []) {
    const [source, target] = typeof v === 'string' ? v.split(':') : [v.source, v.target]
    if (source !== undefined && target !== undefined && !source.startsWith('/') && !source.startsWith('.')) mounts.set(source, target)
  }
  return mounts
}

// ---------------------------------------------------------------- Dockerfile

interface Instruction { op: string; args: string }

/** Instructions with their continuation lines joined and comments dropped. */
function dockerfile(): Instruction[] {
  const lines = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').split('\n')
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

function filesUnder(path: string): string[] {
  const abs = join(ROOT, path)
  if (!statSync(abs).isDirectory()) return [path]
  return readdirSync(abs, { recursive: true, encoding: 'utf8' }).map((f) => `${path}/${f}`)
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
    const stages = instructions.filter((i) => i.op === 'FROM').map((i) => / AS (\S+)/i.exec(i.args)?.[1]).filter((s) => s !== undefined)
    const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    assert.ok(patterns.every((p) => !p.startsWith('!')), 'no exceptions: this check does not model them')
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
        assert.ok(existsSync(join(ROOT, source)), `COPY ${source}: no such path in the repository`)
        for (const file of filesUnder(source.replace(/\/+$/, ''))) {
          const pattern = ignoredBy(patterns, file)
          assert.equal(pattern, undefined, `COPY ${source}: ${file} is excluded by .dockerignore's ${pattern}`)
        }
      }
    }
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

  test('parses, with the production topology: gateway, three storage nodes, workers, replicators, PostgreSQL, Redis with three Sentinels, RabbitMQ', async () => {
    await load()
    assert.deepEqual(Object.keys(services).sort(), ['gateway', ...INFRA, ...NODES, 'replicator', 'worker'].sort())
    assert.deepEqual(mayfly.map(([name]) => name).sort(), ['gateway', ...NODES, 'replicator', 'worker'].sort())
    for (const [name, s] of mayfly) assert.ok(s.build !== undefined, `${name} builds the image from this repository`)
    assert.ok(publishedPorts(services.gateway!).some((p) => p.endsWith('5000:5000')), 'the gateway is published on :5000')
    assert.ok((services.worker!.deploy?.replicas ?? 1) >= 2, 'two workers')
    assert.ok((services.replicator!.deploy?.replicas ?? 1) >= 2, 'a replication manager and a standby')
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

  test('storage nodes: own port, zone and volume, reachable at their service name, announcing to the gateway, no infrastructure credentials', async () => {
    await load()
    const gatewayPort = envOf(services.gateway!).MAYFLY_PORT ?? '5000'
    const zones = new Set<string>()
    const volumes = new Set<string>()
    for (const name of NODES) {
      const s = services[name]!
      const env = envOf(s)
      assert.deepEqual(commandOf(s), ['storage-node'], name)
      assert.ok(env.MAYFLY_PORT !== undefined, `${name} sets MAYFLY_PORT (the image's health check reads it)`)
      assert.equal(env.MAYFLY_ADVERTISE_URL, `http://${name}:${env.MAYFLY_PORT}`, `${name} advertises the url others reach it by`)
      assert.equal(env.MAYFLY_CONTROL_URL, `http://gateway:${gatewayPort}`, `${name} announces itself to the gateway`)
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

  test('gateway, workers and replicators reach PostgreSQL, Redis and RabbitMQ with their credentials, once those are healthy', async () => {
    await load()
    const pg = envOf(services.postgres!)
    const mq = envOf(services.rabbitmq!)
    for (const name of ['gateway', 'worker', 'replicator']) {
      const s = services[name]!
      const env = envOf(s)
      const db = new URL(env.MAYFLY_DATABASE_URL ?? '')
      assert.equal(db.hostname, 'postgres', `${name}: MAYFLY_DATABASE_URL`)
      assert.equal(decodeURIComponent(db.username), pg.POSTGRES_USER)
      assert.equal(decodeURIComponent(db.password), pg.POSTGRES_PASSWORD)
      assert.equal(db.pathname, `/${pg.POSTGRES_DB}`)
      assert.equal(env.MAYFLY_REDIS_URL, undefined, `${name}: no single Redis url`)
      assert.deepEqual(env.MAYFLY_REDIS_SENTINELS?.split(','), SENTINELS.map((h) => `${h}:26379`), `${name}: every Sentinel`)
      assert.equal(env.MAYFLY_REDIS_MASTER_NAME, 'mayfly')
      const amqp = new URL(env.MAYFLY_AMQP_URL ?? '')
      assert.equal(amqp.hostname, 'rabbitmq', `${name}: MAYFLY_AMQP_URL`)
      assert.equal(decodeURIComponent(amqp.username), mq.RABBITMQ_DEFAULT_USER, 'not guest: RabbitMQ refuses guest from other hosts')
      assert.equal(decodeURIComponent(amqp.password), mq.RABBITMQ_DEFAULT_PASS)
      const deps = s.depends_on
      assert.ok(deps !== undefined && !Array.isArray(deps), `${name} waits for its dependencies`)
      for (const dep of DEPENDENCIES) assert.equal(deps[dep]?.condition, 'service_healthy', `${name} waits for ${dep} to be healthy`)
    }
  })

  test('Redis: a master and two replicas without persistence, three Sentinels monitoring them with a quorum of 2', async () => {
    await load()
    for (const name of REDIS) {
      const script = commandOf(services[name]!).join(' ')
      assert.match(script, /exec redis-server --save "" --appendonly no/, `${name} runs redis-server, keeping nothing`)
      // a node that starts joins the master the Sentinels name, never comes back as an empty master
      assert.match(script, /SENTINEL get-master-addr-by-name mayfly/, `${name} asks the Sentinels first`)
      assert.match(script, /--replicaof/, name)
      assert.equal(envOf(services[name]!).ME, name, `${name} announces its service name`)
    }
    for (const name of SENTINELS) {
      const script = commandOf(services[name]!).join(' ')
      assert.match(script, /exec redis-sentinel \/data\/sentinel\.conf/, name)
      assert.match(script, /sentinel monitor mayfly redis-1 6379 2/, `${name} monitors the group mayfly, quorum 2`)
      assert.match(script, /\[ -f \/data\/sentinel\.conf \] \|\|/, `${name} keeps the config it rewrote across restarts`)
      assert.ok(namedVolumes(services[name]!).size > 0, `${name} keeps its config in a volume`)
    }
  })

  test('health checks: each infrastructure service has one; workers and replicators, which serve no HTTP, turn off the image\'s', async () => {
    await load()
    const probes: Record<string, RegExp> = { postgres: /pg_isready/, rabbitmq: /rabbitmq-diagnostics -q ping/ }
    for (const name of REDIS) probes[name] = /redis-cli ping/
    for (const name of SENTINELS) probes[name] = /redis-cli -p 26379 ping/
    for (const [name, probe] of Object.entries(probes)) {
      const check = services[name]!.healthcheck?.test
      assert.ok(check !== undefined, `${name} has a health check`)
      assert.match(Array.isArray(check) ? check.join(' ') : check, probe, name)
    }
    for (const name of ['postgres', 'rabbitmq']) assert.ok(namedVolumes(services[name]!).size > 0, `${name} keeps its data in a volume`)
    for (const name of ['worker', 'replicator']) {
      const check = services[name]!.healthcheck
      assert.ok(check?.disable === true || (Array.isArray(check?.test) && check.test[0] === 'NONE'), `${name} health check disabled`)
    }
  })
})
