// HAProxy in front of a test's gateways, with the configuration the lab uses
// (src/cli/lab/gateway-balancer.ts), in a directory of the test's own; stop()
// ends it and removes the directory.
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gatewayBalancerConfig } from '../../src/cli/lab/gateway-balancer.ts'
import { waitFor } from './wait.ts'

export interface TestBalancer {
  url: string
  pid: number
  stop(): Promise<void>
}

export async function startGatewayBalancer(port: number, gatewayPorts: number[]): Promise<TestBalancer> {
  const dir = await mkdtemp(join(tmpdir(), 'mayfly-haproxy-'))
  const config = gatewayBalancerConfig({
    listen: { host: '127.0.0.1', port },
    gateways: gatewayPorts.map((p, i) => ({ name: `gateway-${i + 1}`, host: '127.0.0.1', port: p })),
  })
  await writeFile(join(dir, 'haproxy.cfg'), config)
  const child = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let output = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => (output += s))
  const exited = new Promise<void>((done) => child.once('exit', () => done()))
  process.once('exit', () => child.kill('SIGKILL'))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await waitFor('HAProxy to listen', async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited: ${output}`)
      return new Promise<boolean>((done) => {
        const socket = connect(port, '127.0.0.1', () => (socket.destroy(), done(true)))
        socket.on('error', () => done(false))
      })
    }, 10_000)
  } catch (err) {
    await stop()
    throw err
  }
  return { url: `http://127.0.0.1:${port}`, pid: child.pid ?? -1, stop }
}
