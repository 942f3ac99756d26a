// scripts/rabbitmq-ha.sh (issue 10, the RabbitMQ tier): three brokers of
// Debian's rabbitmq-server as one cluster on spare loopback ports, with an
// epmd of their own, as the `rabbitmq` user. It comes up with all three
// running in one cluster (cluster_status, and the same cluster name on every
// broker's AMQP port), writes MAYFLY_AMQP_URL with the three brokers, names
// the leader of a quorum queue, and `stop` leaves no process of it behind
// (beam, epmd, erl_child_setup, the launcher) and no port listening. The
// machine's own broker (5672, epmd 4369) is not touched.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { connect } from 'amqplib'
import { parseEnvFile } from '../helpers/ha-script.ts'
import { ROOT } from '../helpers/mayfly-process.ts'

const run = promisify(execFile)
const SCRIPT = join(ROOT, 'scripts', 'rabbitmq-ha.sh')

interface Broker { number: number; name: string; port: number; pid: number; alive: boolean; running_in_cluster: boolean }

/** processes whose command line or environment names the directory */
async function processesOf(dir: string): Promise<string[]> {
  const found: string[] = []
  for (const pid of (await readdir('/proc')).filter((e) => /^\d+$/.test(e))) {
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ')
    const env = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')
    if (cmd.includes(`${dir}/`) || env.includes(`${dir}/`)) found.push(`${pid} ${cmd}`)
  }
  return found
}

/** which of these ports something listens on */
async function listening(ports: number[]): Promise<number[]> {
  const { stdout } = await run('ss', ['-Htln'])
  const open = new Set(stdout.split('\n').map((line) => Number(line.trim().split(/\s+/)[3]?.split(':').pop())))
  return ports.filter((p) => open.has(p))
}

describe('scripts/rabbitmq-ha.sh', { timeout: 200_000 }, () => {
  let dir: string | undefined
  after(async () => {
    if (dir === undefined) return
    await run('sh', [SCRIPT, 'stop', dir]).catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  })

  test('three brokers in one cluster; the leader of a quorum queue; stop leaves nothing', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-rabbitmq-'))
    const started = Date.now()
    await run('sh', [SCRIPT, 'start', dir], { timeout: 150_000 })
    console.log(`rabbitmq-ha: three brokers in one cluster ${((Date.now() - started) / 1000).toFixed(1)} s after start`)

    const topology = parseEnvFile(await readFile(join(dir, 'topology'), 'utf8'))
    const ports = [1, 2, 3].map((n) => Number(topology[`AMQP_${n}_PORT`]))
    assert.ok(!ports.includes(5672) && topology.EPMD_PORT !== '4369', 'not the machine broker\'s ports')
    const { stdout } = await run('sh', [SCRIPT, 'status', dir])
    const brokers = (JSON.parse(stdout) as { brokers: Broker[] }).brokers
    assert.deepEqual(brokers.map((b) => [b.name, b.port, b.alive, b.running_in_cluster]), [
      ['rabbit-1@localhost', ports[0], true, true],
      ['rabbit-2@localhost', ports[1], true, true],
      ['rabbit-3@localhost', ports[2], true, true],
    ])

    const env = parseEnvFile(await readFile(join(dir, 'mayfly.env'), 'utf8'))
    const urls = env.MAYFLY_AMQP_URL!.split(',')
    assert.deepEqual(urls, ports.map((p) => `amqp://guest:guest@127.0.0.1:${p}`))
    // every broker answers AMQP as a member of the same cluster
    const clusterNames = new Set<string>()
    for (const url of urls) {
      const conn = await connect(url)
      clusterNames.add(String(conn.connection.serverProperties.cluster_name))
      await conn.close()
    }
    assert.equal(clusterNames.size, 1, `one cluster: ${[...clusterNames].join(', ')}`)

    // a quorum queue declared through broker 2 is led by it (client-local leader placement)
    const conn = await connect(urls[1]!)
    const ch = await conn.createChannel()
    await ch.assertQueue('ha-test', { durable: true, arguments: { 'x-queue-type': 'quorum' } })
    const leader = (await run('sh', [SCRIPT, 'leader', dir, 'ha-test'])).stdout.trim()
    assert.equal(leader, '2 rabbit-2@localhost')
    await assert.rejects(run('sh', [SCRIPT, 'leader', dir, 'no-such-queue']), 'no leader for a queue that does not exist')
    await conn.close()

    const stopping = dir
    await run('sh', [SCRIPT, 'stop', stopping], { timeout: 60_000 })
    assert.deepEqual(await processesOf(stopping), [], 'nothing of it runs after stop')
    const all = [...ports, ...[1, 2, 3].map((n) => Number(topology[`DIST_${n}_PORT`])), Number(topology.EPMD_PORT)]
    assert.deepEqual(await listening(all), [], 'no port of it listens after stop')
    assert.deepEqual(await listening([5672, 4369]), [5672, 4369], 'the machine\'s own broker and epmd still listen')
  })
})
