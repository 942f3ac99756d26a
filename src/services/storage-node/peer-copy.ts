// Node-to-node copy (DESIGN §4): this node fetches a blob from a peer and
// stores it as a PUT would, so repair traffic does not pass through a gateway.
// The peer is a storage node the control plane knows (source-nodes.ts), never
// a url the caller chose: the cluster secret goes only there (issue 7, bug 13).
import { request, type Dispatcher } from 'undici'
import type { BlobRecord } from '../../core/file.ts'
import { ChecksumMismatch, NotFound, PeerFailed, Timeout, Unavailable } from '../../core/errors.ts'
import type { BlobFiles } from './blob-files.ts'

export interface PeerCopy {
  key: string
  /** the source node, as the control plane knows it */
  source: { id: string; url: string }
  secret: string
  dispatcher: Dispatcher
  timeoutMs: number
  files: BlobFiles
  /** aborted when the caller went away (a replication manager stopping): the fetch stops and nothing is kept */
  signal: AbortSignal
}

/**
 * Streams the peer's blob into our files, checked against the sha256 the peer
 * reports. Throws NotFound when the peer lacks it and PeerFailed when the peer
 * is unreachable, answers an error, stalls or sends bytes that do not match
 * (nothing kept). A failure of this node's own (its disk) is thrown as it is,
 * so that the caller blames the right node (issue 7, bug 6).
 */
export async function copyFromPeer(copy: PeerCopy): Promise<BlobRecord> {
  const { source } = copy
  const url = `${source.url.replace(/\/+$/, '')}/blobs/${copy.key}`
  let res: Dispatcher.ResponseData
  try {
    res = await request(url, {
      method: 'GET',
      headers: { authorization: `Bearer ${copy.secret}` },
      dispatcher: copy.dispatcher,
      headersTimeout: copy.timeoutMs,
      bodyTimeout: copy.timeoutMs,
      signal: copy.signal,
    })
  } catch (err) {
    if (copy.signal.aborted) throw abandoned(err)
    throw new PeerFailed(`source node ${source.id} unreachable: ${(err as Error).message}`, { cause: err })
  }
  const sha256 = res.headers['x-content-sha256']
  if (res.statusCode !== 200 || typeof sha256 !== 'string') {
    await res.body.dump().catch(() => undefined)
    if (res.statusCode === 404) throw new NotFound(`source node ${source.id} has no blob ${copy.key}`)
    throw new PeerFailed(`source node ${source.id} answered ${res.statusCode}`)
  }
  // the body errors when the source fails mid-stream (or stalls: Timeout); a failure of our disk does not touch it
  let sourceError: Error | null = null
  res.body.once('error', (err: Error) => {
    sourceError = err
  })
  try {
    // the idle bound is the peer timeout: a stalled peer fails the copy
    return await copy.files.write(copy.key, res.body, { sha256, idleTimeoutMs: copy.timeoutMs })
  } catch (err) {
    res.body.destroy()
    if (copy.signal.aborted) throw abandoned(err)
    if (err instanceof ChecksumMismatch) throw new PeerFailed(`source node ${source.id} sent bytes that differ from its sha256`)
    if (err instanceof Timeout || sourceError !== null) {
      throw new PeerFailed(`copy from source node ${source.id} failed: ${(err as Error).message}`, { cause: err })
    }
    throw err
  }
}

/** The caller hung up: nobody reads the answer; the error says why the copy stopped, for the log. */
function abandoned(err: unknown): Unavailable {
  return new Unavailable('copy abandoned: the caller went away', 'copy_abandoned', { cause: err })
}
