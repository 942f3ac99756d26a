// The chaos run's verdict (issue 10), Jepsen-style: every acknowledged
// operation of the history is held against what the cluster holds at the
// end. Each violation names the operation (or file) that broke an invariant.
//   - no acknowledged upload lost: every acknowledged file is known, and
//     one that is still alive and unlimited downloads whole
//   - no wrong byte served: every 200 of the history matched the upload
//   - no download limit exceeded: never more full downloads than allowed
//   - dead files gone: every deleted, expired or used-up file answers 410 (404 once purged) and
//     its bytes and variants have left every node within the grace period
//     plus 60 s of its death
//   - every image's variants made
import { createHash } from 'node:crypto'
import { createPostgresMetadataStore } from '../../src/adapters/postgres/metadata.ts'
import { createLogger } from '../../src/log.ts'
import type { AckedFile, Operation } from './load.ts'

export interface Violation {
  invariant: 'acknowledged upload lost' | 'wrong bytes served' | 'download limit exceeded' | 'dead file not gone' | 'variants not made'
  fileId: string
  detail: string
  /** the operation of the history that shows it, when one does */
  operation?: Operation
}

export interface CheckContext {
  url: string
  secret: string
  databaseUrl: string
  nodes: string[]
  graceMs: number
  files: Map<string, AckedFile>
  history: Operation[]
}

const INVARIANTS: Violation['invariant'][] = ['acknowledged upload lost', 'wrong bytes served', 'download limit exceeded', 'dead file not gone', 'variants not made']

export interface Verdict {
  checked: { invariant: Violation['invariant']; files: number; violations: number }[]
  violations: Violation[]
}

interface FileJson {
  status: string
  downloads: number
  max_downloads: number | null
  variants: { name: string; state: string }[]
}

async function fileJson(url: string, id: string): Promise<{ status: number; body: FileJson | null }> {
  const res = await fetch(`${url}/api/files/${id}`, { signal: AbortSignal.timeout(10_000) })
  return { status: res.status, body: res.status === 200 ? ((await res.json()) as FileJson) : (await res.body?.cancel(), null) }
}

async function inventory(node: string, secret: string): Promise<Set<string>> {
  const keys = new Set<string>()
  let after: string | null = null
  do {
    const q = new URLSearchParams({ limit: '10000', ...(after === null ? {} : { after }) })
    const res = await fetch(`${node}/blobs?${q}`, { headers: { authorization: `Bearer ${secret}` }, signal: AbortSignal.timeout(10_000) })
    if (res.status !== 200) throw new Error(`${node} inventory: ${res.status}`)
    const page = (await res.json()) as { blobs: { key: string }[]; next: string | null }
    for (const b of page.blobs) keys.add(b.key)
    after = page.next
  } while (after !== null)
  return keys
}

export async function check(ctx: CheckContext, waitBoundMs: number): Promise<Verdict> {
  const violations: Violation[] = []
  const counted = new Map<Violation['invariant'], number>(INVARIANTS.map((i) => [i, 0]))
  const count = (i: Violation['invariant']) => counted.set(i, counted.get(i)! + 1)

  // wrong bytes and limits, from the history
  const served = new Map<string, number>()
  for (const op of ctx.history) {
    if (op.kind !== 'download' || op.status !== 200 || op.fileId === null) continue
    count('wrong bytes served')
    if (op.bytesMatched !== true) violations.push({ invariant: 'wrong bytes served', fileId: op.fileId, detail: op.error ?? 'bytes differ', operation: op })
    served.set(op.fileId, (served.get(op.fileId) ?? 0) + 1)
  }
  const now = Date.now()
  /** file -> when it died: an acknowledged delete, its expiry, or the download that used it up */
  const dead = new Map<string, number>()
  /** files used up by the downloads the history saw served in full */
  const usedUp = new Set<string>()
  for (const f of ctx.files.values()) {
    const lastServed = ctx.history.filter((o) => o.kind === 'download' && o.fileId === f.id && o.status === 200).at(-1)
    if (f.deletedAt !== undefined) dead.set(f.id, f.deletedAt)
    else if (f.expiresAt <= now) dead.set(f.id, f.expiresAt)
    else if (f.maxDownloads !== null && (served.get(f.id) ?? 0) >= f.maxDownloads) {
      dead.set(f.id, lastServed!.endedAt)
      usedUp.add(f.id)
    }
  }
  for (const f of ctx.files.values()) {
    const upload = ctx.history.find((o) => o.kind === 'upload' && o.fileId === f.id)
    if (f.maxDownloads !== null) {
      count('download limit exceeded')
      const n = served.get(f.id) ?? 0
      if (n > f.maxDownloads) violations.push({ invariant: 'download limit exceeded', fileId: f.id, detail: `${n} full downloads served, limit ${f.maxDownloads}` })
    }
    // a dead file may answer 404 once purged; the checks of dead files are below
    if (dead.has(f.id)) continue
    count('acknowledged upload lost')
    const { status, body } = await fileJson(ctx.url, f.id)
    // the checks take a while: a short-lived link may have expired since they began
    if (f.expiresAt <= Date.now()) {
      dead.set(f.id, f.expiresAt)
      continue
    }
    // a download whose answer was cut may have counted the last allowed one (Jepsen's indeterminate): then it may be dead
    const maybeUsedUp = f.maxDownloads !== null && ctx.history.some((o) => o.kind === 'download' && o.fileId === f.id && !o.ok)
    if (status !== 200 || body === null) {
      if (!maybeUsedUp) violations.push({ invariant: 'acknowledged upload lost', fileId: f.id, detail: `GET /api/files answered ${status} for a live link`, operation: upload })
      continue
    }
    if (f.maxDownloads !== null && body.downloads > f.maxDownloads) {
      violations.push({ invariant: 'download limit exceeded', fileId: f.id, detail: `${body.downloads} downloads counted, limit ${f.maxDownloads}` })
    }
    // a download served in full and then forgotten by the store would let one more through
    if (f.maxDownloads !== null && body.downloads < (served.get(f.id) ?? 0)) {
      violations.push({ invariant: 'download limit exceeded', fileId: f.id, detail: `${served.get(f.id)} full downloads served, only ${body.downloads} counted` })
    }
    if (body.status === 'download_limit_reached' && maybeUsedUp) dead.set(f.id, now)
    else if (body.status !== 'active') violations.push({ invariant: 'acknowledged upload lost', fileId: f.id, detail: `status ${body.status}, never deleted, expired nor used up`, operation: upload })
    else if (f.maxDownloads === null) {
      const res = await fetch(`${ctx.url}/api/download/${f.id}`, { signal: AbortSignal.timeout(30_000) })
      const bytes = Buffer.from(await res.arrayBuffer())
      if (res.status !== 200 || createHash('sha256').update(bytes).digest('hex') !== f.sha256) {
        violations.push({ invariant: 'acknowledged upload lost', fileId: f.id, detail: `download at the end: ${res.status}, ${bytes.length} bytes`, operation: upload })
      }
    }
  }

  // variants of live images, waited for
  const images = [...ctx.files.values()].filter((f) => f.image && !dead.has(f.id) && f.expiresAt > now + waitBoundMs)
  const deadline = Date.now() + waitBoundMs
  for (const f of images) {
    count('variants not made')
    for (;;) {
      const { body } = await fileJson(ctx.url, f.id)
      const states = body?.variants.map((v) => v.state) ?? []
      if (states.length > 0 && states.every((s) => s === 'ready')) break
      if (Date.now() > deadline) {
        violations.push({ invariant: 'variants not made', fileId: f.id, detail: `variants ${JSON.stringify(body?.variants ?? null)}` })
        break
      }
      await new Promise((r) => setTimeout(r, 1000))
    }
  }

  // dead files: 410 at once, bytes gone from every node within grace + 60 s of death
  // the blobs of the dead files and of their variants, as the metadata store records them
  const metadata = await createPostgresMetadataStore({ url: ctx.databaseUrl, log: createLogger('silent') })
  try {
    const ids = [...dead.keys()]
    const rows: { id: string; key: string }[] = []
    for (const id of ids) {
      const file = await metadata.getFile(id)
      if (file !== null) rows.push({ id, key: file.blobKey })
      for (const v of await metadata.listVariants(id)) if (v.blob !== null) rows.push({ id, key: v.blob.key })
    }
    for (const id of ids) {
      count('dead file not gone')
      const res = await fetch(`${ctx.url}/api/download/${id}`, { method: 'HEAD' })
      // 410 while its record is kept, 404 once purged: never 200
      if (res.status === 410 || res.status === 404) continue
      if (usedUp.has(id)) violations.push({ invariant: 'download limit exceeded', fileId: id, detail: `${served.get(id)} full downloads served, and the link still answers ${res.status}` })
      else violations.push({ invariant: 'dead file not gone', fileId: id, detail: `HEAD /api/download answered ${res.status}` })
    }
    const lastDeath = Math.max(0, ...dead.values())
    const bound = lastDeath + ctx.graceMs + 60_000
    for (;;) {
      const left: { id: string; key: string; node: string }[] = []
      for (const node of ctx.nodes) {
        const keys = await inventory(node, ctx.secret)
        for (const r of rows) if (keys.has(r.key)) left.push({ ...r, node })
      }
      if (left.length === 0 || Date.now() > bound) {
        for (const l of left.filter((x) => Date.now() > dead.get(x.id)! + ctx.graceMs + 60_000)) {
          violations.push({ invariant: 'dead file not gone', fileId: l.id, detail: `blob ${l.key} still on ${l.node}, ${Math.round((Date.now() - dead.get(l.id)!) / 1000)} s after the file died` })
        }
        break
      }
      await new Promise((r) => setTimeout(r, 2000))
    }
  } finally {
    await metadata.close()
  }
  return {
    checked: INVARIANTS.map((invariant) => ({ invariant, files: counted.get(invariant)!, violations: violations.filter((v) => v.invariant === invariant).length })),
    violations,
  }
}
