// Small HTTP helpers for e2e tests: uploads as curl -F sends them.
import { createHash } from 'node:crypto'
import { openAsBlob } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { PHOTOS } from './testdata.ts'

export { PHOTOS }
// the tests' polling helper, also reachable from here (most e2e and fault tests import it with these helpers)
export { waitFor } from './wait.ts'

export async function photoPaths(): Promise<string[]> {
  return (await readdir(PHOTOS)).filter((f) => f.endsWith('.jpg')).sort().map((f) => join(PHOTOS, f))
}

/** A stream's bytes, whole. */
export async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(Buffer.from(c))
  return Buffer.concat(chunks)
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

export interface UploadResult {
  status: number
  body: Record<string, unknown>
}

/** POST /api/upload with `file` (bytes or a path) and optional fields, like curl -F. */
export async function upload(
  base: string,
  file: Uint8Array | string,
  fields: Record<string, string> = {},
  name = 'test.bin',
  type = 'application/octet-stream',
): Promise<UploadResult> {
  const form = new FormData()
  for (const [k, v] of Object.entries(fields)) form.append(k, v)
  if (typeof file === 'string') form.append('file', await openAsBlob(file, { type: 'image/jpeg' }), file.split('/').pop())
  else form.append('file', new Blob([file], { type }), name)
  const res = await fetch(`${base}/api/upload`, { method: 'POST', body: form })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

export async function getJson(url: string, init?: RequestInit): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, init)
  const text = await res.text()
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }
}
