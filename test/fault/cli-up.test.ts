// The README's first commands, as a person runs them: `mayfly up` starts a
// whole local cluster; a photo goes up with the CLI and with curl exactly as
// the README writes it; the CLI downloads it back byte for byte and `mayfly
// status` shows three nodes up; SIGTERM stops `up` and every storage node it
// started.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { getJson, photoPaths, sha256, waitFor } from '../helpers/http.ts'
import { childPids, freePorts, isAlive, runMayfly, spawnMayfly, type MayflyProcess } from '../helpers/mayfly-process.ts'

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

describe('mayfly up, as the README says', { timeout: 180_000 }, () => {
  let dir: string
  let up: MayflyProcess
  let base: string
  let nodePids: number[] = []
  let photo: string
  let photoBytes: Buffer

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-up-'))
    const [port, ...nodePorts] = await freePorts(4)
    base = `http://127.0.0.1:${port}`
    up = spawnMayfly(['up', '--data-dir', join(dir, 'data'), '--port', String(port), '--node-ports', nodePorts.join(',')], {})
    await waitFor('mayfly up to be ready', async () => {
      if (!up.alive()) throw new Error(`mayfly up exited (${String(await up.exited)}):\n${up.output()}`)
      return (await getJson(`${base}/ready`).catch(() => ({ status: 0 }))).status === 200 ? true : undefined
    }, 60_000)
    nodePids = await childPids(up.pid)
    photo = (await photoPaths()).find((p) => p.includes('colorfulcups'))!
    photoBytes = await readFile(photo)
  })

  after(async () => {
    // whatever happened, nothing this test started stays
    if (up?.alive()) await up.kill('SIGKILL')
    for (const pid of nodePids) if (await isAlive(pid)) process.kill(pid, 'SIGKILL')
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('three storage nodes run as children of `up`', () => {
    assert.equal(nodePids.length, 3, `children of mayfly up: ${nodePids.join(', ')}`)
  })

  test('upload with the CLI and with curl, download with the CLI: the same bytes', async () => {
    const cli = await runMayfly(['upload', photo, '--url', base])
    assert.equal(cli.code, 0, cli.stderr)
    const fromCli = JSON.parse(cli.stdout) as Record<string, unknown>
    assert.equal(fromCli.sha256, sha256(photoBytes))
    assert.equal(fromCli.name, 'colorfulcups-2560x1600.jpg')
    assert.equal(fromCli.mime, 'image/jpeg', 'sniffed from the bytes')
    assert.match(cli.stderr, /share: http/)

    // exactly the README's command
    const curl = await run('curl', ['-X', 'POST', `${base}/api/upload`, '-F', `file=@${photo}`])
    assert.equal(curl.code, 0, curl.stderr)
    const fromCurl = JSON.parse(curl.stdout) as Record<string, unknown>
    assert.equal(fromCurl.sha256, sha256(photoBytes), curl.stdout)
    assert.equal(fromCurl.mime, 'image/jpeg')
    assert.equal(fromCurl.size, photoBytes.length)

    for (const [how, body] of [['cli', fromCli], ['curl', fromCurl]] as const) {
      const out = join(dir, `${how}-download.jpg`)
      const dl = await runMayfly(['download', String(body.id), '-o', out, '--url', base])
      assert.equal(dl.code, 0, dl.stderr)
      assert.ok((await readFile(out)).equals(photoBytes), `${how}: the downloaded bytes are the photo's`)
    }
  })

  test('mayfly status lists three nodes up', async () => {
    const status = await runMayfly(['status', '--url', base])
    assert.equal(status.code, 0, status.stderr)
    const lines = status.stdout.split('\n')
    assert.match(lines[0]!, /^NODE\s+ZONE\s+STATE/)
    const rows = lines.slice(1).filter((l) => /^\S+\s+[a-c]\s+\S+\s+http/.test(l))
    assert.equal(rows.length, 3, status.stdout)
    assert.deepEqual(rows.map((r) => r.split(/\s+/).slice(1, 3)).sort(), [['a', 'up'], ['b', 'up'], ['c', 'up']], status.stdout)
  })

  test('SIGTERM stops up and leaves no storage node behind', async () => {
    assert.equal(nodePids.length, 3)
    const started = Date.now()
    const how = await up.kill('SIGTERM')
    assert.equal(how, 0, `mayfly up exited with ${String(how)}:\n${up.output().slice(-3000)}`)
    assert.ok(Date.now() - started < 15_000, 'up stopped within its shutdown deadline')
    const left = []
    for (const pid of nodePids) if (await isAlive(pid)) left.push(pid)
    assert.deepEqual(left, [], 'storage nodes still running after up exited')
  })
})
