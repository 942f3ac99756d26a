// Where a node-to-node copy may come from (issue 7, bug 13): only a storage
// node the control plane knows and has not declared lost. The caller names
// the source by node id; this node asks its control plane (MAYFLY_CONTROL_URL,
// a gateway: GET /internal/nodes/:id; with several, the first that answers)
// for that node's url. So the cluster
// secret goes to the control plane and to registered nodes only, and a caller
// cannot make this node probe or fetch an address of its choosing.
import { request, type Dispatcher } from 'undici'
import { Conflict, Unavailable } from '../../core/errors.ts'

export interface SourceNodes {
  /**
   * The base url of live storage node `id`. Conflict('unknown_source') when
   * the control plane does not know it or declared it lost (the same answer
   * for both, and nothing else is asked); Unavailable('control_plane_unavailable')
   * when there is no control plane to ask or it did not answer.
   */
  urlOf(id: string): Promise<string>
}

export interface SourceNodesOptions {
  /** MAYFLY_CONTROL_URL, asked in turn; without one no copy can be made */
  controlUrls: readonly string[]
  secret: string
  dispatcher: Dispatcher
  timeoutMs: number
  /**
   * how long an answer about a known node is reused (a repair asks for the
   * same few sources again and again); unknown ids are asked anew each time,
   * so a node that just registered is found at once
   */
  ttlMs?: number
}

/** What the control plane says of a known node. */
interface Known {
  url: string
  lost: boolean
}

const DEFAULT_TTL_MS = 5000

export function createSourceNodes(options: SourceNodesOptions): SourceNodes {
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS
  const cached = new Map<string, { at: number; node: Known }>()
  /** one question per id at a time; concurrent copies share it */
  const asking = new Map<string, Promise<Known | null>>()

  async function ask(controlUrl: string, id: string): Promise<Known | null> {
    const url = `${controlUrl.replace(/\/+$/, '')}/internal/nodes/${encodeURIComponent(id)}`
    let res: Dispatcher.ResponseData
    try {
      res = await request(url, {
        method: 'GET',
        headers: { authorization: `Bearer ${options.secret}` },
        dispatcher: options.dispatcher,
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
      })
    } catch (err) {
      throw unavailable(`the control plane did not answer: ${(err as Error).message}`, err)
    }
    let body: { id?: unknown; url?: unknown; lost?: unknown; error?: unknown } = {}
    try {
      body = (await res.body.json()) as typeof body
    } catch {
      // not JSON: judged by its status below
    }
    // 404 unknown_node is the route's answer; a bare 404 is a control plane without the route
    if (res.statusCode === 404 && body.error === 'unknown_node') return null
    if (res.statusCode !== 200) throw unavailable(`the control plane answered ${res.statusCode} to a node lookup`)
    if (body.id !== id || typeof body.url !== 'string' || !/^https?:\/\//.test(body.url) || typeof body.lost !== 'boolean') {
      throw unavailable('the control plane answered a node lookup without { id, url, lost }')
    }
    return { url: body.url, lost: body.lost }
  }

  /** The first control plane's answer that comes; Unavailable when none answers. */
  async function askAny(id: string): Promise<Known | null> {
    let failure: unknown
    for (const controlUrl of options.controlUrls) {
      try {
        return await ask(controlUrl, id)
      } catch (err) {
        failure = err
      }
    }
    throw failure
  }

  async function lookup(id: string): Promise<Known | null> {
    const hit = cached.get(id)
    if (hit !== undefined && Date.now() - hit.at < ttlMs) return hit.node
    if (options.controlUrls.length === 0) throw unavailable('this node has no MAYFLY_CONTROL_URL, so it cannot look up the source of a copy')
    let pending = asking.get(id)
    if (pending === undefined) {
      pending = askAny(id)
        .then((node) => {
          if (node === null) cached.delete(id)
          else cached.set(id, { at: Date.now(), node })
          return node
        })
        .finally(() => asking.delete(id))
      asking.set(id, pending)
    }
    return pending
  }

  return {
    async urlOf(id) {
      const node = await lookup(id)
      if (node === null || node.lost) throw new Conflict(`no live storage node ${id} is registered with the control plane`, 'unknown_source')
      return node.url
    },
  }
}

function unavailable(message: string, cause?: unknown): Unavailable {
  return new Unavailable(message, 'control_plane_unavailable', cause === undefined ? undefined : { cause })
}
