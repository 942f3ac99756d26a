// closeOnSignal (src/cli/lifecycle.ts), as `mayfly up` and every service use
// it: the steps run in their order and the store closes last; when a step
// hangs past the deadline the store is closed all the same before the process
// exits 1, so PGlite is left shut down, not crashed (issue 7, bug 8).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { waitFor } from '../helpers/wait.ts'
import { NODE_BIN, ROOT, childEnv } from '../helpers/mayfly-process.ts'

const ENTRY = join(ROOT, 'test', 'helpers', 'shutdown-entry.ts')
/** PostgreSQL's DBState in global/pg_control: 1 = shut down, 6 = in production */
const pgliteState = async (dataDir: string) => (await readFile(join(dataDir, 'metadata', 'global', 'pg_control'))).readUInt32LE(16)

describe('shutdown on SIGTERM', { timeout: 120_000 }, () => {
  const dirs: string[] = []
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  async function shutDown(mode: 'finish' | 'hang'): Promise<{ code: number | null; journal: string[]; state: number }> {
    const dir = await mkdtemp(join(tmpdir(), 'mayfly-shutdown-'))
    dirs.push(dir)
    const journalPath = join(dir, 'journal')
    const child = spawn(NODE_BIN, [ENTRY, dir, journalPath, mode, '3000'], { cwd: ROOT, env: childEnv({}), stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s))
    try {
      await waitFor('the process to be ready', () => out.includes('ready\n'), 60_000)
      child.kill('SIGTERM')
      const code = await exited
      const journal = (await readFile(journalPath, 'utf8')).trim().split('\n')
      return { code, journal, state: await pgliteState(dir) }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }

  test('the steps in order, then the store; exit 0', async () => {
    const { code, journal, state } = await shutDown('finish')
    assert.equal(code, 0)
    assert.deepEqual(journal, ['first', 'second', 'third', 'store closed'])
    assert.equal(state, 1, 'PGlite shut down')
  })

  test('a step that hangs past the deadline: the store is closed anyway, exit 1', async () => {
    const { code, journal, state } = await shutDown('hang')
    assert.equal(code, 1)
    assert.deepEqual(journal, ['first', 'second hangs', 'store closed'])
    assert.equal(state, 1, 'PGlite shut down, not left open')
  })
})
