// A stand-in control plane for storage node tests that run no gateway: it
// records the heartbeats it gets, registers each node that beats (as a
// gateway does), and answers the node lookup a copy's target makes
// (GET /internal/nodes/:id, as internal-routes.ts does). Tests can also
// register nodes by hand and mark them lost.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { NodeAnnouncement } from '../../src/core/node.ts'

export interface ControlPlane {
  url: string
  /** every heartbeat, with the Authorization header it came with */
  beats: { auth: string | undefined; body: NodeAnnouncement }[]
  /** every node id looked up, with the Authorization header */
  lookups: { id: string; auth: string | undefined }[]
  /** resolves with the next heartbeat `pred` accepts */
  next(pred: (b: NodeAnnouncement) => boolean): Promise<NodeAnnouncement>
  /** registers (or moves) a node without heartbeats */
  register(id: string, url: string): void
  markLost(id: string): void
  close(): Promise<void>
  server: Server
}

export function startControlPlane(secret: string): Promise<ControlPlane> {
  const beats: ControlPlane['beats'] = []
  const lookups: ControlPlane['lookups'] = []
  const nodes = new Map<string, { url: string; lost: boolean }>()
  let waiters: { pred: (b: NodeAnnouncement) => boolean; done: (b: NodeAnnouncement) => void }[] = []
  const answer = (res: ServerResponse, status: number, body?: unknown) => {
    if (body === undefined) return res.writeHead(status).end()
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  }
  const server = createServer((req: IncomingMessage, res) => {
    let raw = ''
    req.setEncoding('utf8').on('data', (s: string) => (raw += s))
    req.on('end', () => {
      const lookup = req.method === 'GET' ? /^\/internal\/nodes\/([^/?]+)$/.exec(req.url ?? '') : null
      if (req.method === 'POST' && req.url === '/internal/nodes/heartbeat') {
        const body = JSON.parse(raw) as NodeAnnouncement
        beats.push({ auth: req.headers.authorization, body })
        if (req.headers.authorization === `Bearer ${secret}`) nodes.set(body.id, { url: body.url, lost: nodes.get(body.id)?.lost ?? false })
        waiters = waiters.filter((w) => (w.pred(body) ? (w.done(body), false) : true))
        return answer(res, 204)
      }
      if (lookup !== null) {
        const id = decodeURIComponent(lookup[1]!)
        lookups.push({ id, auth: req.headers.authorization })
        if (req.headers.authorization !== `Bearer ${secret}`) return answer(res, 401, { error: 'unauthorized', message: 'cluster secret needed' })
        const node = nodes.get(id)
        if (node === undefined) return answer(res, 404, { error: 'unknown_node', message: `no storage node ${id} is registered` })
        return answer(res, 200, { id, url: node.url, lost: node.lost })
      }
      answer(res, 404, { error: 'not_found', message: 'no such route' })
    })
  })
  return new Promise((done) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      done({
        url: `http://127.0.0.1:${port}`,
        beats,
        lookups,
        server,
        next: (pred) => new Promise((resolve) => waiters.push({ pred, done: resolve })),
        register: (id, url) => void nodes.set(id, { url, lost: false }),
        markLost: (id) => {
          const node = nodes.get(id)
          if (node !== undefined) node.lost = true
        },
        close: () =>
          new Promise<void>((closed) => {
            server.closeAllConnections()
            server.close(() => closed())
          }),
      })
    })
  })
}
