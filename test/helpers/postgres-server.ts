// A PostgreSQL server of a test's own, on a spare loopback port, from the
// machine's PostgreSQL binaries: initdb'd into a temporary directory, trust
// authentication, fsync off. start({ standby: true }) starts it in recovery
// (a standby.signal and no primary to follow: read-only until promote()), as
// a Patroni replica or a demoted primary looks to a client. The server runs
// as the `postgres` user when the tests run as root (initdb refuses root).
// stop() and cleanup() leave nothing behind.
import { execFile } from 'node:child_process'
import { chown, mkdtemp, readdir, rm, writeFile, appendFile } from 'node:fs/promises'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { freePort } from './mayfly-process.ts'

export interface PostgresServer {
  port: number
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string
  /** starts it, in recovery when `standby` */
  start(options?: { standby?: boolean }): Promise<void>
  /** ends recovery: it takes writes from now on */
  promote(): Promise<void>
  /** stops it at once (mode immediate, like a crash) */
  stop(): Promise<void>
  /**
   * stops and starts it again: `fast` ends every session with 57P01
   * (terminating connection due to administrator command), `immediate` drops
   * them like a crash (the clients see their connections reset)
   */
  restart(mode: 'fast' | 'immediate'): Promise<void>
  /** stops it if running and removes its directory */
  cleanup(): Promise<void>
}

/** the binaries of the newest PostgreSQL installed */
async function binDir(): Promise<string> {
  const versions = (await readdir('/usr/lib/postgresql')).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
  if (versions[0] === undefined) throw new Error('no PostgreSQL under /usr/lib/postgresql')
  return join('/usr/lib/postgresql', versions[0], 'bin')
}

function run(command: string, args: string[]): Promise<string> {
  const asPostgres = userInfo().uid === 0
  const [cmd, argv] = asPostgres ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args]
  return new Promise((resolve, reject) => {
    execFile(cmd, argv as string[], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${command} ${args.join(' ')} failed: ${stderr || err.message}`))
      else resolve(stdout)
    })
  })
}

export async function createPostgresServer(): Promise<PostgresServer> {
  const bin = await binDir()
  const dir = await mkdtemp(join(tmpdir(), 'mayfly-pg-'))
  if (userInfo().uid === 0) await chown(dir, ...(await postgresIds()))
  const data = join(dir, 'data')
  const port = await freePort()
  await run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'])
  await appendFile(
    join(data, 'postgresql.conf'),
    `\nlisten_addresses = '127.0.0.1'\nport = ${port}\nunix_socket_directories = '${dir}'\nfsync = off\n`,
  )
  let running = false
  const pgCtl = (...args: string[]) => run(join(bin, 'pg_ctl'), ['-D', data, ...args])
  const server: PostgresServer = {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async start(options = {}) {
      if (options.standby === true) await writeFile(join(data, 'standby.signal'), '')
      await pgCtl('-l', join(dir, 'log'), '-w', 'start')
      running = true
    },
    async promote() {
      await pgCtl('-w', 'promote')
    },
    async stop() {
      if (!running) return
      await pgCtl('-m', 'immediate', '-w', 'stop')
      running = false
    },
    async restart(mode) {
      await pgCtl('-m', mode, '-w', 'stop')
      await pgCtl('-l', join(dir, 'log'), '-w', 'start')
    },
    async cleanup() {
      await server.stop().catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
    },
  }
  return server
}

async function postgresIds(): Promise<[number, number]> {
  const out = await new Promise<string>((resolve, reject) =>
    execFile('id', ['postgres'], (err, stdout) => (err === null ? resolve(stdout) : reject(err))),
  )
  const uid = /uid=(\d+)/.exec(out)?.[1]
  const gid = /gid=(\d+)/.exec(out)?.[1]
  if (uid === undefined || gid === undefined) throw new Error(`no postgres user: ${out}`)
  return [Number(uid), Number(gid)]
}
