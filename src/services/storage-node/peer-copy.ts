// Node-to-node copy (DESIGN §4): this node fetches a blob from a peer and
// stores it as a PUT would, so repair traffic does not pass through a gateway.
import { request, type Dispatcher } from 'undici'
import type { BlobRecord } from '../../core/file.ts'
import { ChecksumMismatch, MayflyError, NotFound } from '../../core/errors.ts'
import { InsufficientStorage, type BlobFiles } from './blob-files.ts'

/** 502: the peer we were asked to copy from failed or sent bad bytes. */
export class PeerFailed extends MayflyError {
  constructor(message: string, options?: ErrorOptions) {
    super(502, 'peer_unavailable', message, options)
  }
}

export interface PeerCopy {
  key: string
  /** the peer's base url */
  source: string
  secret: string
  dispatcher: Dispatcher
  timeoutMs: number
  files: BlobFiles
}

/**
 * Streams the peer's blob into our files, checked against the sha256 the peer
 * reports. Throws NotFound when the peer lacks it and PeerFailed when the peer
 * is unreachable, answers an error or its bytes do not match (nothing kept).
 */
export async function copyFromPeer(copy: PeerCopy): Promise<BlobRecord> {
  const url = `${copy.source.replace(/\/+$/, '')}/blobs/${copy.key}`
  let res: Dispatcher.ResponseData
  try {
    res = await request(url, {
      method: 'GET',
      headers: { authorization: `Bearer ${copy.secret}` },
      dispatcher: copy.dispatcher,
      headersTimeout: copy.timeoutMs,
      bodyTimeout: copy.timeoutMs,
    })
  } catch (err) {
    throw new PeerFailed(`peer ${copy.source} unreachable: ${(err as Error).message}`, { cause: err })
  }
  const sha256 = res.headers['x-content-sha256']
  if (res.statusCode !== 200 || typeof sha256 !== 'string') {
    await res.body.dump().catch(() => undefined)
    if (res.statusCode === 404) throw new NotFound(`peer ${copy.source} has no blob ${copy.key}`)
    throw new PeerFailed(`peer ${copy.source} answered ${res.statusCode}`)
  }
  try {
    // the idle bound is the peer timeout: a stalled peer fails the copy
    return await copy.files.write(copy.key, res.body, { sha256, idleTimeoutMs: copy.timeoutMs })
  } catch (err) {
    res.body.destroy()
    if (err instanceof ChecksumMismatch) throw new PeerFailed(`peer ${copy.source} sent bytes that differ from its sha256`)
    if (err instanceof InsufficientStorage) throw err
    throw new PeerFailed(`copy from peer ${copy.source} failed: ${(err as Error).message}`, { cause: err })
  }
}
