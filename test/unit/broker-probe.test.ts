// The broker probe behind /api/cluster's queue.brokers: a broker is up when
// it answers AMQP's protocol header with a frame; a port that accepts and
// says nothing (the kernel does that for a frozen broker) or refuses is down.
import assert from 'node:assert/strict'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { test } from 'node:test'
import { probeBroker } from '../../src/adapters/rabbitmq/broker-probe.ts'

async function listen(onData: (socket: import('node:net').Socket) => void): Promise<{ server: Server; url: string }> {
  const server = createServer((socket) => socket.once('data', () => onData(socket)))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `amqp://guest:guest@127.0.0.1:${(server.address() as AddressInfo).port}` }
}

test('a broker that answers the protocol header is up; a silent, a refusing or a foreign one is down', async (t) => {
  // Connection.Start begins with a method frame: type 1
  const amqp = await listen((s) => s.write(Buffer.from([1, 0, 0, 0, 0, 0, 4])))
  const silent = await listen(() => {})
  const http = await listen((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'))
  t.after(() => {
    for (const s of [amqp, silent, http]) s.server.close()
  })
  assert.deepEqual(await probeBroker(amqp.url, 500), { ok: true })
  const started = Date.now()
  assert.deepEqual(await probeBroker(silent.url, 300), { ok: false, error: 'no answer within 300 ms' })
  assert.ok(Date.now() - started < 1000)
  assert.deepEqual(await probeBroker(http.url, 500), { ok: false, error: 'not an AMQP 0-9-1 broker' })
  const refused = await probeBroker('amqp://127.0.0.1:1', 500)
  assert.equal(refused.ok, false)
})
