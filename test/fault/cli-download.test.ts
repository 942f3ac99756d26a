// Issue 7, bug 11: `mayfly download` as a person runs it (a real process, in
// a folder of theirs) against a real cluster. What can fail on this side is
// found before the bytes are asked for, so a limited link loses no download
// to a file that could not be saved; a saved download leaves no temp file.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { getJson, upload } from '../helpers/http.ts'
import { childEnv, MAIN, NODE_BIN } from '../helpers/mayfly-process.ts'

/** `mayfly <args>` run in `cwd`, to its end. */
function mayflyIn(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(NODE_BIN, [MAIN, ...args], { cwd, env: childEnv({}), timeout: 60_000 }, (err, stdout, stderr) => {
      done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

describe('mayfly download', { timeout: 180_000 }, () => {
  let cluster: Cluster
  let dir: string

  before(async () => {
    cluster = await startCluster({ mode: 'embedded' })
    dir = await mkdtemp(join(tmpdir(), 'mayfly-cli-download-'))
  })
  after(async () => {
    await cluster?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  const downloads = async (id: string) => Number((await getJson(`${cluster.url}/api/files/${id}`)).body.downloads)

  async function limitedFile(maxDownloads: number) {
    const bytes = randomBytes(64 * 1024)
    const up = await upload(cluster.url, bytes, { max_downloads: String(maxDownloads) }, 'notes.bin')
    assert.equal(up.status, 201, JSON.stringify(up.body))
    return { id: String(up.body.id), bytes }
  }

  test('into a folder that already has the file: a clear error, exit 1, no download counted, the file untouched', async () => {
    const { id } = await limitedFile(1)
    const folder = join(dir, 'has-it')
    await mkdir(folder)
    await writeFile(join(folder, 'notes.bin'), 'mine')

    const run = await mayflyIn(folder, ['download', id, '--url', cluster.url])
    assert.notEqual(run.code, 0)
    assert.match(run.stderr, /notes\.bin already exists/)
    assert.doesNotMatch(run.stderr, /EEXIST/)
    assert.equal(await downloads(id), 0, 'the link kept its download')
    assert.equal(await readFile(join(folder, 'notes.bin'), 'utf8'), 'mine')
    assert.deepEqual(await readdir(folder), ['notes.bin'], 'no temp file left')

    // the same with -o naming the file, or a folder that has it
    for (const output of [join(folder, 'notes.bin'), folder]) {
      const again = await mayflyIn(dir, ['download', id, '-o', output, '--url', cluster.url])
      assert.notEqual(again.code, 0)
      assert.match(again.stderr, /already exists/)
    }
    assert.equal(await downloads(id), 0)
  })

  test('into a folder that cannot be written: a clear error and no download counted', async () => {
    const { id } = await limitedFile(1)
    await writeFile(join(dir, 'a-file'), '')
    for (const [output, why] of [
      [join(dir, 'missing', 'out.bin'), /cannot save into .*missing: there is no/],
      [join(dir, 'a-file', 'out.bin'), /cannot save into .*a-file: .*not a folder/],
    ] as const) {
      const run = await mayflyIn(dir, ['download', id, '-o', output, '--url', cluster.url])
      assert.notEqual(run.code, 0)
      assert.match(run.stderr, why)
      assert.doesNotMatch(run.stderr, /\bE[A-Z]{3,}\b/, 'no raw error code')
    }
    assert.equal(await downloads(id), 0)
  })

  test('a download of a limited link: the bytes, counted once, no temp file; a used-up link says so', async () => {
    const { id, bytes } = await limitedFile(1)
    const folder = join(dir, 'empty')
    await mkdir(folder)

    const run = await mayflyIn(folder, ['download', id, '--url', cluster.url])
    assert.equal(run.code, 0, run.stderr)
    assert.ok((await readFile(join(folder, 'notes.bin'))).equals(bytes))
    assert.deepEqual(await readdir(folder), ['notes.bin'], 'only the file, no temp file')
    assert.equal(await downloads(id), 1)

    const gone = await mayflyIn(join(dir), ['download', id, '-o', join(dir, 'second.bin'), '--url', cluster.url])
    assert.notEqual(gone.code, 0)
    assert.match(gone.stderr, /this link is gone: it has reached its download limit/)
    assert.deepEqual((await readdir(dir)).filter((f) => f.includes('second')), [], 'nothing saved')
  })

  test('a password-protected file: a missing or wrong password is said before anything is asked for', async () => {
    const up = await upload(cluster.url, randomBytes(1000), { max_downloads: '1', password: 'right horse battery' }, 'secret.bin')
    assert.equal(up.status, 201)
    const id = String(up.body.id)
    const none = await mayflyIn(dir, ['download', id, '-o', join(dir, 's1.bin'), '--url', cluster.url])
    assert.match(none.stderr, /protected by a password: give it with --password/)
    const wrong = await mayflyIn(dir, ['download', id, '-o', join(dir, 's2.bin'), '--password', 'nope', '--url', cluster.url])
    assert.match(wrong.stderr, /wrong password/)
    const right = await mayflyIn(dir, ['download', id, '-o', join(dir, 's3.bin'), '--password', 'right horse battery', '--url', cluster.url])
    assert.equal(right.code, 0, right.stderr)
    assert.equal((await readFile(join(dir, 's3.bin'))).length, 1000)
  })

  test('a password in any letters, set in the upload form, opens the file from the CLI and from raw UTF-8 headers (curl)', async () => {
    const password = 'пароль 🔑 grüße'
    const up = await upload(cluster.url, randomBytes(1000), { max_downloads: '2', password }, 'geheim.bin')
    assert.equal(up.status, 201)
    const id = String(up.body.id)
    // what curl sends for -H 'X-Mayfly-Password: …': the UTF-8 bytes as they are
    const raw = (pw: string) => ({ headers: { 'x-mayfly-password': Buffer.from(pw, 'utf8').toString('latin1') } })
    const info = await fetch(`${cluster.url}/api/files/${id}`, raw(password))
    assert.equal(info.status, 200, await info.text())
    const wrong = await fetch(`${cluster.url}/api/files/${id}`, raw('пароль 🔑 grusse'))
    await wrong.arrayBuffer()
    assert.equal(wrong.status, 401)
    const cli = await mayflyIn(dir, ['download', id, '-o', join(dir, 'u1.bin'), '--password', password, '--url', cluster.url])
    assert.equal(cli.code, 0, cli.stderr)
    assert.equal((await readFile(join(dir, 'u1.bin'))).length, 1000)
    // a Latin-1 password sent as Latin-1 (as undici and browsers' fetch do) still opens its file
    const latin = await upload(cluster.url, randomBytes(10), { password: 'pässwörd' })
    const asLatin1 = await fetch(`${cluster.url}/api/files/${String(latin.body.id)}`, { headers: { 'x-mayfly-password': 'pässwörd' } })
    assert.equal(asLatin1.status, 200, await asLatin1.text())
  })
})
