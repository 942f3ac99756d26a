// Whether each broker of MAYFLY_AMQP_URL answers, for /api/cluster (DESIGN
// §3: the queue tier's brokers). A TCP connect is not enough: the kernel
// accepts connections for a frozen broker too. So the probe sends AMQP's
// protocol header and waits for the broker's first frame (Connection.Start),
// then hangs up before any login: no channel, no queue, nothing to clean up.
import { connect } from 'node:net'

export interface BrokerState {
  /** the url without its credentials */
  url: string
  state: 'up' | 'down'
  /** when down: what the probe saw */
  error?: string
}

const PROTOCOL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x00, 0x00, 0x09, 0x01])
/** the first octet of a method frame, the type of Connection.Start */
const FRAME_METHOD = 1

export function probeBroker(url: string, timeoutMs: number): Promise<{ ok: true } | { ok: false; error: string }> {
  const u = new URL(url)
  const port = Number(u.port === '' ? (u.protocol === 'amqps:' ? 5671 : 5672) : u.port)
  return new Promise((resolve) => {
    const socket = connect({ host: u.hostname, port })
    const done = (result: { ok: true } | { ok: false; error: string }) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(result)
    }
    const timer = setTimeout(() => done({ ok: false, error: `no answer within ${timeoutMs} ms` }), timeoutMs)
    socket.once('connect', () => socket.write(PROTOCOL_HEADER))
    socket.once('data', (chunk: Buffer) => done(chunk[0] === FRAME_METHOD ? { ok: true } : { ok: false, error: 'not an AMQP 0-9-1 broker' }))
    socket.once('error', (err) => done({ ok: false, error: err.message }))
    socket.once('close', () => done({ ok: false, error: 'closed the connection' }))
  })
}
