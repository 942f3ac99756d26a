// The BlobStore port over storage nodes: zone-aware placement, one upload
// streamed to every chosen node at once and acknowledged on the write quorum,
// reads from the first replica that answers (hedged and bounded in time:
// replica-reads.ts) that move to another on failure, also mid-stream (by Range).
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { PassThrough, Readable } from 'node:stream'
import { MayflyError, NotFound, TooLarge, Unavailable } from '../core/errors.ts'
import { inDomains, placeReplicas, type PlacementStrategy } from '../core/placement.ts'
import type { Logger } from '../log.ts'
import type { BlobClient, BlobStore, FailedWrite, NodeDirectory, NodeView, WrittenBlob } from '../ports.ts'
import { firstAnswer, readOrder } from './replica-reads.ts'

export interface ReplicatedBlobStoreOptions {
  /** the storage node calls this store makes */
  client: Pick<BlobClient, 'put' | 'get' | 'getWhole' | 'delete'>
  nodes: NodeDirectory
  replicationFactor: number
  writeQuorum: number
  placement: PlacementStrategy
  /** a node that takes no bytes for this long is dropped from the write */
  stallTimeoutMs: number
  /** reads: how long one replica may take to answer (MAYFLY_NODE_TIMEOUT_MS); default stallTimeoutMs, the same setting */
  nodeTimeoutMs?: number
  /** reads: a replica silent this long gets another one asked beside it; default 250 ms, at most a quarter of nodeTimeoutMs */
  hedgeAfterMs?: number
  log: Logger
}

/**
 * Blobs up to this size are read whole before they are sent: each node then
 * gets one request with a Content-Length and the sha256 to check, instead of
 * a chunked stream (per-request cost dominates small blobs).
 */
const WHOLE_WRITE_BYTES = 2 * 1024 * 1024
/** Whole reads of blobs up to this size are gathered and checked before they are sent. */
const WHOLE_READ_BYTES = 1024 * 1024

interface Leg {
  node: NodeView
  /** null when the blob is sent whole */
  body: PassThrough | null
  /** resolves with the node's sha256, rejects when the node failed */
  result: Promise<string>
  state: 'writing' | 'failed' | 'stored'
  /** we cut this leg ourselves (the upload failed): its error says nothing about the node */
  abandoned: boolean
}

export function createReplicatedBlobStore(options: ReplicatedBlobStoreOptions): BlobStore {
  const { client, nodes, replicationFactor, writeQuorum, placement, stallTimeoutMs, log } = options
  const nodeTimeoutMs = options.nodeTimeoutMs ?? stallTimeoutMs
  const hedgeAfterMs = options.hedgeAfterMs ?? Math.min(250, nodeTimeoutMs / 4)

  function startLeg(node: NodeView, key: string, whole?: { data: Buffer; sha256: string }): Leg {
    const body = whole === undefined ? new PassThrough({ highWaterMark: 256 * 1024 }) : null
    const leg: Leg = { node, body, result: Promise.resolve(''), state: 'writing', abandoned: false }
    const sent =
      whole === undefined
        ? client.put(node.url, key, body!)
        : client.put(node.url, key, whole.data, { size: whole.data.length, sha256: whole.sha256 })
    leg.result = sent.then(
      (stored) => {
        leg.state = 'stored'
        nodes.reportSuccess(node.id)
        return stored.sha256
      },
      (err: unknown) => {
        leg.state = 'failed'
        body?.destroy()
        if (leg.abandoned) throw err
        if (isNodeFault(err)) nodes.reportFailure(node.id)
        log.warn({ err, node: node.id, key }, 'replica write failed')
        throw err
      },
    )
    leg.result.catch(() => {}) // observed through leg.state; never an unhandled rejection
    return leg
  }

  /** Writes one chunk to every live leg and waits for the slow ones, dropping those that stall or fail. */
  async function writeChunk(legs: Leg[], chunk: Buffer): Promise<void> {
    const waits: Promise<void>[] = []
    for (const leg of legs) {
      if (leg.state !== 'writing') continue
      if (!leg.body!.write(chunk)) waits.push(waitForDrain(leg, leg.body!))
    }
    if (waits.length > 0) await Promise.all(waits)
    requireQuorum(legs)
  }

  function waitForDrain(leg: Leg, body: PassThrough): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        log.warn({ node: leg.node.id }, 'replica write stalled; dropping it from this upload')
        nodes.reportFailure(leg.node.id)
        leg.state = 'failed'
        body.destroy()
        done()
      }, stallTimeoutMs)
      const done = () => {
        clearTimeout(timer)
        body.off('drain', done)
        resolve()
      }
      body.once('drain', done)
      leg.result.then(done, done)
    })
  }

  function requireQuorum(legs: Leg[]): void {
    const alive = legs.filter((l) => l.state !== 'failed').length
    if (alive < writeQuorum) {
      throw new Unavailable(
        `only ${alive} of ${legs.length} storage nodes took the upload; ${writeQuorum} are needed`,
        'quorum_unavailable',
      )
    }
  }

  /** Resolves with the first writeQuorum legs that stored the right bytes, or throws once that cannot happen. */
  async function awaitQuorum(legs: Leg[], sha256: string): Promise<Leg[]> {
    const stored: Leg[] = []
    let settled = 0
    return new Promise((resolve, reject) => {
      for (const leg of legs) {
        const finish = (ok: boolean) => {
          settled++
          if (ok) stored.push(leg)
          if (stored.length === writeQuorum) resolve([...stored])
          else if (stored.length + (legs.length - settled) < writeQuorum) {
            reject(new Unavailable(`only ${stored.length} storage nodes stored the upload; ${writeQuorum} are needed`, 'quorum_unavailable'))
          }
        }
        leg.result.then(
          (nodeSha) => {
            if (nodeSha === sha256) return finish(true)
            log.error({ node: leg.node.id, nodeSha, sha256 }, 'a node stored different bytes than were sent')
            leg.state = 'failed'
            finish(false)
          },
          () => finish(false),
        )
      }
    })
  }

  /** Deletes a failed write's copies; true when every node confirmed. */
  async function removeFrom(key: string, targets: NodeView[]): Promise<boolean> {
    const results = await Promise.allSettled(targets.map((node) => client.delete(node.url, key)))
    results.forEach((result, i) => {
      if (result.status === 'rejected') log.warn({ err: result.reason, node: targets[i]!.id, key }, 'cleanup of a failed write failed')
    })
    return results.every((result) => result.status === 'fulfilled')
  }

  return {
    async write(source, { key, maxBytes }) {
      const targets = placeReplicas(inDomains(await nodes.writable(), placement), replicationFactor)
      if (targets.length < writeQuorum) {
        source.resume()
        const refused = new Unavailable(
          `${targets.length} storage nodes are available; an upload needs ${writeQuorum}`,
          'quorum_unavailable',
        )
        throw markFailed(refused, Promise.resolve(true))
      }
      const chunks = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
      const head: Buffer[] = []
      let size = 0
      let legs: Leg[] = []
      try {
        let ended = false
        while (!ended && size <= WHOLE_WRITE_BYTES) {
          const next = await chunks.next()
          if (next.done === true) ended = true
          else {
            head.push(next.value)
            size += next.value.length
            if (size > maxBytes) throw new TooLarge(`the upload is larger than the limit of ${maxBytes} bytes`)
          }
        }
        let sha256: string
        if (ended) {
          const data = Buffer.concat(head, size)
          sha256 = createHash('sha256').update(data).digest('hex')
          legs = targets.map((node) => startLeg(node, key, { data, sha256 }))
        } else {
          legs = targets.map((node) => startLeg(node, key))
          const hash = createHash('sha256')
          for (const chunk of head) {
            hash.update(chunk)
            await writeChunk(legs, chunk)
          }
          for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) {
            const chunk = next.value
            size += chunk.length
            if (size > maxBytes) throw new TooLarge(`the upload is larger than the limit of ${maxBytes} bytes`)
            hash.update(chunk)
            await writeChunk(legs, chunk)
          }
          for (const leg of legs) if (leg.state === 'writing') leg.body!.end()
          sha256 = hash.digest('hex')
        }
        const quorum = await awaitQuorum(legs, sha256)
        const rest = legs.filter((l) => !quorum.includes(l))
        const remaining = Promise.all(rest.map((l) => l.result.then((s) => s === sha256, () => false))).then((oks) => {
          const late = rest.filter((_, i) => oks[i])
          void removeFrom(key, rest.filter((_, i) => !oks[i]).map((l) => l.node))
          return late.map((l) => l.node.id)
        })
        return {
          key,
          size,
          sha256,
          replicas: quorum.map((l) => l.node.id),
          remaining,
        } satisfies WrittenBlob
      } catch (err) {
        for (const leg of legs) {
          leg.abandoned = true
          leg.body?.destroy()
        }
        if (!source.destroyed) source.resume()
        // A leg may have stored its copy before the others failed: no copy may
        // stay. Only nodes that were sent bytes can hold one, and only once
        // their write settled is a removal final. The deletes are sent before
        // the error is thrown (a retry under the same key is sent after them);
        // the error says when they are done (FailedWrite).
        await Promise.allSettled(legs.map((l) => l.result))
        throw markFailed(err, removeFrom(key, legs.map((l) => l.node)))
      }
    },

    async open(blob, replicas, range) {
      const start = range?.start ?? 0
      const end = range?.end ?? blob.size - 1
      if (end < start) return Readable.from([])
      const order = readOrder(await nodes.all(), replicas)
      let position = start
      /** the replicas a resume after a failure mid-stream may ask: none that failed in this read, nor the one serving it */
      let candidates = order

      /**
       * What the first replica to answer `ask` answered, hedged and bounded
       * in time (replica-reads.ts); once every candidate failed, our error:
       * NotFound only when no replica holds the blob.
       */
      async function firstReplica<T>(ask: (node: NodeView, signal: AbortSignal) => Promise<T>, discard?: (value: T) => void) {
        const result = await firstAnswer({ candidates, ask, discard, hedgeAfterMs, nodeTimeoutMs, onFailure: failed })
        if (result.ok) {
          candidates = result.rest
          return result
        }
        candidates = []
        const missing = result.errors.filter((err) => err instanceof NotFound).length
        if (missing === order.length && order.length > 0) throw new NotFound('no replica holds this blob', 'blob_missing')
        throw new Unavailable('no replica of this file can be read right now', 'replicas_unavailable', { cause: result.errors.at(-1) })
      }
      /** A replica's call failed: a sick node is avoided for a while. */
      function failed(node: NodeView, err: unknown): void {
        if (isNodeFault(err)) nodes.reportFailure(node.id)
        if (err instanceof MayflyError && err.code === 'checksum_mismatch') {
          log.error({ node: node.id, key: blob.key }, 'a replica sent bytes that do not match the checksum; asking another')
        } else {
          log.warn({ err, node: node.id, key: blob.key }, 'replica read failed; asking another')
        }
      }

      if (start === 0 && end === blob.size - 1 && blob.size <= WHOLE_READ_BYTES) {
        // A small blob is read whole (one Buffer, no stream from the node) and
        // checked before a byte of it is sent: wrong bytes from one replica
        // simply mean another.
        const { value } = await firstReplica(async (node, signal) => {
          const data = await client.getWhole(node.url, blob.key, blob.size, { signal })
          if (createHash('sha256').update(data).digest('hex') !== blob.sha256) {
            throw new Unavailable(`node ${node.id} sent bytes that do not match the checksum`, 'checksum_mismatch')
          }
          return data
        })
        return Readable.from([value])
      }

      /** Connects to the first replica that answers for [position, end]. */
      async function connect(): Promise<{ node: NodeView; body: Readable }> {
        const from = position
        const { node, value } = await firstReplica(
          async (node, signal) => {
            const res = await client.get(node.url, blob.key, { range: { start: from, end }, signal })
            if (res.totalSize !== blob.size) {
              res.body.destroy()
              throw new NotFound(`node ${node.id} holds a blob of ${res.totalSize} bytes, not ${blob.size}`)
            }
            return res.body
          },
          (body) => body.destroy(),
        )
        return { node, body: value }
      }

      let current = await connect()
      const out = new PassThrough({ highWaterMark: 256 * 1024 })
      // A whole read is checked end to end: nodes verify what they send, and
      // this last check guarantees a body never ends cleanly with wrong bytes.
      // Its last chunk is held back until the sha256 matches: a client that
      // has all Content-Length bytes counts the body complete, so cutting the
      // response after the last byte would be too late.
      const hash = start === 0 && end === blob.size - 1 ? createHash('sha256') : null
      let held: Buffer | null = null
      out.on('close', () => current.body.destroy())

      const pump = async () => {
        for (;;) {
          try {
            for await (const chunk of current.body as AsyncIterable<Buffer>) {
              position += chunk.length
              let ready: Buffer | null = chunk
              if (hash !== null) {
                hash.update(chunk)
                ready = held
                held = chunk
              }
              if (ready !== null && !out.write(ready)) await once(out, 'drain')
              if (out.destroyed) return
            }
            if (position > end) return void finish()
            throw new Unavailable(`node ${current.node.id} ended the blob early`, 'replica_truncated')
          } catch (err) {
            if (out.destroyed) return
            current.body.destroy()
            nodes.reportFailure(current.node.id)
            log.warn({ err, node: current.node.id, key: blob.key, position }, 'replica failed mid-stream; resuming from the next one')
            try {
              current = await connect()
            } catch (connectErr) {
              out.destroy(connectErr as Error)
              return
            }
          }
        }
      }
      const finish = () => {
        const actual = hash?.digest('hex')
        if (actual === undefined || actual === blob.sha256) return void (held === null ? out.end() : out.end(held))
        log.error({ key: blob.key, actual, expected: blob.sha256 }, 'a read assembled wrong bytes; cutting the response')
        out.destroy(new Unavailable('the bytes read do not match the checksum', 'checksum_mismatch'))
      }
      void pump()
      return out
    },

    async remove(key, nodeIds, options) {
      const removed: string[] = []
      await Promise.all(
        nodeIds.map(async (id) => {
          const node = await nodes.byId(id)
          if (node === undefined) return
          try {
            await client.delete(node.url, key, { fence: options?.fence })
            removed.push(id)
          } catch (err) {
            log.warn({ err, node: id, key }, 'blob delete failed; will retry')
          }
        }),
      )
      return removed
    },
  }
}

/** Sets FailedWrite on what write() throws (a non-object, which we never throw, passes as it is). */
function markFailed(err: unknown, copiesRemoved: Promise<boolean>): unknown {
  if (typeof err === 'object' && err !== null) Object.assign(err, { copiesRemoved } satisfies FailedWrite)
  return err
}

/** Errors that say the node is sick, not that the request was wrong. */
function isNodeFault(err: unknown): boolean {
  return !(err instanceof MayflyError) || err.status >= 500
}
