// Issue 7, bug 4 (the CLI side) and the config item: `mayfly status` against
// a gateway that shows the cluster only to the cluster secret
// (MAYFLY_PUBLIC_STATUS=false) sends the secret it finds (MAYFLY_CLUSTER_SECRET,
// --secret-file, or <MAYFLY_DATA_DIR>/cluster-secret), and says what to do
// without one. The client commands read MAYFLY_URL through the config schema
// and stop only on a bad value they use.
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, request, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { runMayfly } from '../helpers/mayfly-process.ts'

const HINT = /set MAYFLY_CLUSTER_SECRET or pass --secret-file/

describe('mayfly status with MAYFLY_PUBLIC_STATUS=false', { timeout: 180_000 }, () => {
  let cluster: Cluster
  let dir: string
  /** an empty data dir: no secret file there */
  let emptyDataDir: string
  /** a proxy in front of the gateway that notes the Authorization of every /api/cluster request */
  let proxy: Server
  let proxyUrl: string
  const seen: (string | undefined)[] = []

  before(async () => {
    cluster = await startCluster({ mode: 'embedded', env: { MAYFLY_PUBLIC_STATUS: 'false' } })
    dir = await mkdtemp(join(tmpdir(), 'mayfly-cli-status-'))
    emptyDataDir = join(dir, 'empty')
    const target = new URL(cluster.url)
    proxy = createServer((req, res) => {
      if (req.url === '/api/cluster') seen.push(req.headers.authorization)
      const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      })
      req.pipe(upstream)
    })
    await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done))
    const address = proxy.address()
    proxyUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  })
  after(async () => {
    await new Promise((done) => proxy?.close(done))
    await cluster?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  const nodeRows = (stdout: string) => stdout.split('\n').filter((l) => /^\S+\s+[a-c]\s+up\s+http/.test(l))

  test('the gateway refuses the cluster to anyone without the secret', async () => {
    assert.equal((await fetch(`${cluster.url}/api/cluster`)).status, 401)
  })

  test('without a secret: a clear hint, exit 1', async () => {
    const run = await runMayfly(['status', '--url', cluster.url], { env: { MAYFLY_DATA_DIR: emptyDataDir } })
    assert.equal(run.code, 1)
    assert.match(run.stderr, /only to holders of the cluster secret/)
    assert.match(run.stderr, HINT)
  })

  test('with MAYFLY_CLUSTER_SECRET: the table, and the request carried the secret', async () => {
    seen.length = 0
    const run = await runMayfly(['status', '--url', proxyUrl], { env: { MAYFLY_CLUSTER_SECRET: cluster.secret } })
    assert.equal(run.code, 0, run.stderr)
    assert.equal(nodeRows(run.stdout).length, 3, run.stdout)
    // asked without the secret first, then with it after the 401
      assert.deepEqual(seen, [undefined, `Bearer ${cluster.secret}`])
  })

  test('with --secret-file, or the secret file in MAYFLY_DATA_DIR (as `mayfly up` keeps it)', async () => {
    const dataDir = join(dir, 'data')
    await rm(dataDir, { recursive: true, force: true })
    await mkdir(dataDir)
    await writeFile(join(dataDir, 'cluster-secret'), `${cluster.secret}\n`)
    for (const [args, env] of [
      [['--secret-file', join(dataDir, 'cluster-secret')], { MAYFLY_DATA_DIR: emptyDataDir }],
      [[], { MAYFLY_DATA_DIR: dataDir }],
    ] as const) {
      seen.length = 0
      const run = await runMayfly(['status', '--url', proxyUrl, ...args], { env })
      assert.equal(run.code, 0, run.stderr)
      assert.equal(nodeRows(run.stdout).length, 3, run.stdout)
      // asked without the secret first, then with it after the 401
      assert.deepEqual(seen, [undefined, `Bearer ${cluster.secret}`])
    }
    const missing = await runMayfly(['status', '--url', cluster.url, '--secret-file', join(dir, 'nope')], { env: { MAYFLY_DATA_DIR: emptyDataDir } })
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /cannot read the cluster secret: there is no .*nope/)
  })

  test('a wrong secret: says it was refused and where it came from', async () => {
    const run = await runMayfly(['status', '--url', cluster.url], { env: { MAYFLY_CLUSTER_SECRET: 'x'.repeat(32) } })
    assert.equal(run.code, 1)
    assert.match(run.stderr, /refused the cluster secret from MAYFLY_CLUSTER_SECRET/)
    assert.match(run.stderr, HINT)
  })

  test('a bad MAYFLY_CLUSTER_SECRET gets the schema\'s message, exit 2', async () => {
    const run = await runMayfly(['status', '--url', cluster.url], { env: { MAYFLY_CLUSTER_SECRET: 'short' } })
    assert.equal(run.code, 2)
    assert.match(run.stderr, /MAYFLY_CLUSTER_SECRET: at least 16 characters/)
  })

  test('MAYFLY_URL points the client commands at the gateway; a bad one is named, unless --url is given', async () => {
    const env = { MAYFLY_URL: cluster.url, MAYFLY_CLUSTER_SECRET: cluster.secret }
    const run = await runMayfly(['status'], { env })
    assert.equal(run.code, 0, run.stderr)
    assert.equal(nodeRows(run.stdout).length, 3, run.stdout)

    const bad = await runMayfly(['status'], { env: { ...env, MAYFLY_URL: 'ftp://nowhere' } })
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /MAYFLY_URL:/)
    const flag = await runMayfly(['status', '--url', cluster.url], { env: { ...env, MAYFLY_URL: 'ftp://nowhere' } })
    assert.equal(flag.code, 0, flag.stderr)
  })

  test('a bad MAYFLY_* value the command does not use does not stop it', async () => {
    const env = { MAYFLY_CLUSTER_SECRET: cluster.secret, MAYFLY_REPLICATION_FACTOR: 'many', MAYFLY_DATABASE_URL: 'not a url' }
    const run = await runMayfly(['status', '--url', cluster.url], { env })
    assert.equal(run.code, 0, run.stderr)
  })
})
