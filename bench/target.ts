// What the throughput phases need from a store under test: put one object,
// get one back. nginx (WebDAV PUT/GET) and Mayfly (multipart upload,
// download by id) implement it; the phases and checks are shared.
import { createHash, randomBytes } from 'node:crypto'

/** The bytes every upload of one size sends (random, made once per run). */
export interface Payload {
  label: string
  size: number
  data: Buffer
  sha256: string
}

export function makePayload(label: string, size: number): Payload {
  const data = randomBytes(size)
  return { label, size, data, sha256: createHash('sha256').update(data).digest('hex') }
}

export interface StoreTarget {
  /** 'nginx', 'mayfly-real', 'mayfly-embedded' */
  name: string
  /** stores one copy of the payload; returns what download() needs to fetch it */
  upload(payload: Payload, seq: number): Promise<string>
  /** fetches one object and checks its length (and its sha256 when checkSha) */
  download(ref: string, payload: Payload, checkSha: boolean): Promise<void>
}
