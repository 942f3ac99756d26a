// The lock on a data dir's embedded metadata (src/adapters/embedded/data-dir-lock.ts):
// refused while the process that wrote it lives; taken over when that process
// is gone, when its pid now belongs to a process that started later, or
// when the file was left half-written; released only by its holder.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { lockDataDir } from '../../src/adapters/embedded/data-dir-lock.ts'

async function startTime(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!
}

describe('the data dir lock', () => {
  let dir: string
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' })
  const lockFile = () => join(dir, 'metadata.lock')

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-lock-'))
  })
  after(async () => {
    sleeper.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  })

  test('refused while its holder lives, naming it', async () => {
    const holder = { pid: sleeper.pid!, started: await startTime(sleeper.pid!), command: 'mayfly up --data-dir x' }
    await writeFile(lockFile(), JSON.stringify(holder))
    await assert.rejects(lockDataDir(dir, 'mayfly migrate'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'conflict')
      assert.match(err.message, new RegExp(`in use by process ${sleeper.pid} \\(mayfly up --data-dir x\\)`))
      return true
    })
    assert.deepEqual(JSON.parse(await readFile(lockFile(), 'utf8')), holder, 'the holder\'s lock is left alone')
  })

  for (const [what, content] of [
    ['its holder is gone', async () => JSON.stringify({ pid: 2 ** 22 + 12345, started: null, command: 'mayfly up' })],
    ['its pid belongs to a process that started later', async () => JSON.stringify({ pid: sleeper.pid, started: '1', command: 'mayfly up' })],
    ['it was left half-written', async () => '{"pid":'],
  ] as const) {
    test(`taken over when ${what}; released by its new holder`, async () => {
      await writeFile(lockFile(), await content())
      const lock = await lockDataDir(dir, 'mayfly migrate')
      const mine = JSON.parse(await readFile(lockFile(), 'utf8')) as { pid: number; command: string }
      assert.deepEqual([mine.pid, mine.command], [process.pid, 'mayfly migrate'])
      await lock.release()
      await assert.rejects(readFile(lockFile()), { code: 'ENOENT' })
    })
  }

  test('a lock taken over by another process is not removed by the old holder\'s release', async () => {
    const lock = await lockDataDir(dir, 'mayfly up')
    const other = JSON.stringify({ pid: sleeper.pid, started: await startTime(sleeper.pid!), command: 'mayfly up' })
    await writeFile(lockFile(), other)
    await lock.release()
    assert.equal(await readFile(lockFile(), 'utf8'), other)
    await rm(lockFile())
  })
})
