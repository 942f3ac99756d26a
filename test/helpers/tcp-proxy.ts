// A TCP proxy on loopback that a test can cut and restore, to make a
// dependency unreachable for a moment without touching the real server
// (a network partition between one process and Redis, say).
import { connect, createServer, type Server, type Socket } from 'node:net'

export interface TcpProxy {
  port: number
  /** Drops every connection and refuses new ones until restore(). */
  cut(): Promise<void>
  /** Accepts connections again, on the same port. */
  restore(): Promise<void>
  close(): Promise<void>
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  const track = (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => s.destroy())
  }
  const makeServer = () =>
    createServer((client) => {
      const upstream = connect(targetPort, targetHost)
      track(client)
      track(upstream)
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
      client.pipe(upstream).pipe(client)
    })
  const listen = (server: Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port))
    })
  let server: Server | null = makeServer()
  const port = await listen(server, 0)
  const stop = async () => {
    const s = server
    server = null
    for (const socket of sockets) socket.destroy()
    if (s !== null) await new Promise((closed) => s.close(closed))
  }
  return {
    port,
    cut: stop,
    async restore() {
      if (server !== null) return
      server = makeServer()
      await listen(server, port)
    },
    close: stop,
  }
}
