// A storage node's heartbeats (src/services/storage-node/gateway-beats.ts):
// to its control url (a load balancer here), and to each gateway that url's
// answers name, so that every gateway hears every node itself; a gateway no
// longer named is no longer beaten, and an older control plane (204, no
// list) gets the beats it always got. Real HTTP servers on loopback.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, test } from 'node:test'
import { Agent } from 'undici'
import { createLogger } from '../../src/log.ts'
import { startGatewayBeats } from '../../src/services/storage-node/gateway-beats.ts'
import { waitFor } from '../helpers/wait.ts'

interface FakeGateway {
  url: string
  beats: number
  /** what it answers: a list of gateways, or null for an older gateway's 204 */
  names: string[] | null
  server: Server
}

async function fakeGateway(): Promise<FakeGateway> {
  const g: FakeGateway = { url: '', beats: 0, names: [], server: createServer() }
  g.server.on('request', (req, res) => {
    req.resume()
    req.on('end', () => {
      assert.equal(req.url, '/internal/nodes/heartbeat')
      assert.equal(req.headers.authorization, 'Bearer s3cret')
      g.beats++
      if (g.names === null) return void res.writeHead(204).end()
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ gateways: g.names }))
    })
  })
  await new Promise<void>((resolve) => g.server.listen(0, '127.0.0.1', resolve))
  g.url = `http://127.0.0.1:${(g.server.address() as AddressInfo).port}`
  return g
}

const dispatcher = new Agent()
const servers: Server[] = []
after(async () => {
  for (const s of servers) s.close()
  await dispatcher.close()
})

function beatsTo(controlUrls: string[]) {
  return startGatewayBeats({
    controlUrls,
    secret: 's3cret',
    intervalMs: 40,
    timeoutMs: 1000,
    dispatcher,
    describe: async () => ({ id: 'node-1', url: 'http://127.0.0.1:9', zone: 'a', version: '0', capacityBytes: 1, freeBytes: 1, usedBytes: 0, blobCount: 0, quarantined: 0 }),
    log: createLogger('silent'),
  })
}

test('through a balancer: every gateway it names is beaten directly, one no longer named is not, stop ends them all', async () => {
  const [balancer, a, b] = await Promise.all([fakeGateway(), fakeGateway(), fakeGateway()])
  servers.push(balancer.server, a.server, b.server)
  // the balancer's answers come from a gateway behind it; the list may name the balancer's own url too
  balancer.names = [a.url, `${b.url}/`, balancer.url, 'not a url', 'ftp://x']
  const beats = beatsTo([balancer.url])
  await waitFor('both gateways beaten directly', () => a.beats >= 3 && b.beats >= 3, 5000, 20)
  assert.deepEqual(beats.direct(), [a.url, b.url].sort(), 'the balancer itself and what is not an http url are not beaten twice')

  balancer.names = [a.url]
  await waitFor('b dropped', () => beats.direct().length === 1, 5000, 20)
  const bAfter = b.beats
  const aAfter = a.beats
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.ok(b.beats <= bAfter + 1, `b, no longer named, got ${b.beats - bAfter} more beats`)
  assert.ok(a.beats > aAfter + 2, 'a, still named, goes on being beaten')

  await beats.stop()
  const counts = [balancer.beats, a.beats, b.beats]
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.deepEqual([balancer.beats, a.beats, b.beats], counts, 'nothing is beaten after stop')
})

test('an older control plane (204, no list) is beaten as before, and nothing else', async () => {
  const older = await fakeGateway()
  servers.push(older.server)
  older.names = null
  const beats = beatsTo([older.url])
  await waitFor('beats', () => older.beats >= 3, 5000, 20)
  assert.deepEqual(beats.direct(), [])
  await beats.stop()
})
