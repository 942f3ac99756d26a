// scripts/patroni-ha.sh (issue 9, first step): etcd and three Patroni members
// of PostgreSQL with synchronous_mode, as the `postgres` user, on spare
// loopback ports. It comes up with a leader and two streaming replicas (one
// synchronous); a kill -9 of the leader's postmaster makes a replica the
// primary (primary_start_timeout: 0, no restart in place); `stop` leaves no
// process of it behind, orphaned postmasters included.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { promisify } from 'node:util'
import pg from 'pg'
import { ROOT } from '../helpers/mayfly-process.ts'
import { waitFor } from '../helpers/wait.ts'

const run = promisify(execFile)
const SCRIPT = join(ROOT, 'scripts', 'patroni-ha.sh')

interface Member { name: string; role: string; state: string; port: number }

describe('scripts/patroni-ha.sh', { timeout: 120_000 }, () => {
  let dir: string | undefined
  after(async () => {
    if (dir === undefined) return
    await run('sh', [SCRIPT, 'stop', dir]).catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  })

  /** processes whose command line names the directory (Patroni, etcd, postmasters) */
  const processesOf = async (d: string) => {
    const found: string[] = []
    for (const pid of (await readdir('/proc')).filter((e) => /^\d+$/.test(e))) {
      const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ')
      if (cmd.includes(`${d}/`)) found.push(`${pid} ${cmd}`)
    }
    return found
  }

  test('a leader and two streaming replicas; a killed postmaster fails over; stop leaves nothing', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-patroni-'))
    await run('sh', [SCRIPT, 'start', dir], { timeout: 100_000 })
    const members = async (): Promise<Member[]> => {
      const { stdout } = await run('sh', [SCRIPT, 'status', dir!])
      return (JSON.parse(stdout) as { members: Member[] }).members
    }
    const first = await members()
    assert.deepEqual(first.map((m) => m.role).sort(), ['leader', 'replica', 'sync_standby'])
    const url = (await readFile(join(dir, 'mayfly.env'), 'utf8')).trim().replace(/^MAYFLY_DATABASE_URL=/, '')
    assert.match(url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/postgres$/)

    const leader = first.find((m) => m.role === 'leader')!
    const postmaster = Number((await readFile(join(dir, leader.name, 'data', 'postmaster.pid'), 'utf8')).split('\n')[0])
    process.kill(postmaster, 'SIGKILL')
    const killedAt = Date.now()
    const promoted = await waitFor('another member to accept writes', async () => {
      for (const m of first.filter((x) => x !== leader)) {
        const client = new pg.Client({ host: '127.0.0.1', port: m.port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 500 })
        try {
          await client.connect()
          const { rows } = await client.query<{ ro: boolean }>('SELECT pg_is_in_recovery() AS ro')
          if (rows[0]?.ro === false) return m
        } catch {
          // not yet
        } finally {
          await client.end().catch(() => undefined)
        }
      }
      return undefined
    }, 30_000, 100)
    console.log(`patroni-ha: ${promoted.name} accepts writes ${Date.now() - killedAt} ms after the leader's postmaster was killed`)
    assert.notEqual(promoted.name, leader.name)

    const stopping = dir
    await run('sh', [SCRIPT, 'stop', stopping], { timeout: 60_000 })
    assert.deepEqual(await processesOf(stopping), [], 'nothing of it runs after stop')
  })
})
