// `mayfly orphans list|delete|keep|hold`: what an operator decides about
// copies of blobs the metadata does not know, which the replication manager
// holds instead of deleting (after a restore of the metadata, or when more
// are due at once than it deletes on its own; docs/replication.md).
import { request } from 'undici'
import { formatBytes } from '../core/bytes.ts'
import { describeOrphans, failure, type ClientOptions, type OrphansJson } from './client.ts'
import { authorization, keptBackMessage, maySend, refusedSecretMessage, requireClusterSecret, type FoundSecret } from './cluster-secret.ts'

export interface OrphanOptions extends ClientOptions {
  secretFile?: string
}

interface OrphanPage extends OrphansJson {
  copies: { node_id: string; key: string; size: number; state: string; held_at: string }[]
  next: { after_node: string; after_key: string } | null
}

const PAGE = 1000
const POLL_MS = 500

async function secretFor(options: OrphanOptions): Promise<FoundSecret> {
  const secret = await requireClusterSecret(options.secretFile)
  if (!maySend(secret, options.url)) throw new Error(keptBackMessage(secret, options.url))
  return secret
}

async function call<T>(options: OrphanOptions, secret: FoundSecret, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const res = await request(`${options.url}${path}`, {
    method,
    headers: { ...authorization(secret), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (res.statusCode === 401) {
    await res.body.dump()
    throw new Error(refusedSecretMessage(secret))
  }
  if (res.statusCode !== 200) await failure(res)
  return (await res.body.json()) as T
}

const page = (options: OrphanOptions, secret: FoundSecret, after: OrphanPage['next'], limit: number) =>
  call<OrphanPage>(
    options, secret, 'GET',
    `/api/cluster/orphans?limit=${limit}${after === null ? '' : `&after_node=${encodeURIComponent(after.after_node)}&after_key=${encodeURIComponent(after.after_key)}`}`,
  )

export async function orphansListCommand(options: OrphanOptions & { limit: string; json?: boolean }): Promise<void> {
  const limit = Number(options.limit)
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`--limit is a number of copies, not ${options.limit}`)
  const secret = await secretFor(options)
  let first: OrphanPage | null = null
  const copies: OrphanPage['copies'] = []
  for (let after: OrphanPage['next'] = null; ; ) {
    const p = await page(options, secret, after, Math.min(PAGE, limit - copies.length))
    first ??= p
    copies.push(...p.copies)
    if (p.next === null || copies.length >= limit) break
    after = p.next
  }
  if (options.json === true) return void process.stdout.write(`${JSON.stringify({ ...first, copies, next: undefined }, null, 2)}\n`)
  process.stdout.write(`${describeOrphans(first!) ?? 'no copies of unknown blobs are held, and no hold is set'}\n`)
  if (copies.length === 0) return
  const rows = [['NODE', 'KEY', 'SIZE', 'STATE', 'HELD AT'], ...copies.map((c) => [c.node_id, c.key, formatBytes(c.size), c.state, c.held_at])]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`)
  const total = first!.held + first!.kept + first!.released
  if (copies.length < total) process.stdout.write(`(${copies.length} of ${total} shown: --limit N shows more)\n`)
}

function keysBody(keys: string[]): { keys?: string[] } {
  return keys.length === 0 ? {} : { keys }
}

export async function orphansDeleteCommand(keys: string[], options: OrphanOptions & { wait: boolean }): Promise<void> {
  const secret = await secretFor(options)
  const answer = await call<{ released: number; hold_lifted: boolean }>(options, secret, 'POST', '/api/cluster/orphans/delete', keysBody(keys))
  process.stderr.write(
    `released ${answer.released} copies: the replication manager deletes them from their nodes` +
      `${answer.hold_lifted ? '; the hold is lifted (unknown blobs are deleted after their grace again, or held if many are due at once)' : ''}\n`,
  )
  if (!options.wait || answer.released === 0) return
  let changedAt = Date.now()
  let hinted = false
  for (let left = answer.released; left > 0; ) {
    await new Promise((r) => setTimeout(r, POLL_MS))
    const now = (await page(options, secret, null, 1)).released
    if (now !== left) changedAt = Date.now()
    left = now
    process.stderr.write(`\r${left} left to delete   `)
    if (!hinted && Date.now() - changedAt > 15_000) {
      process.stderr.write('\nnothing deleted for 15 s: is a replication manager running, and are the nodes up? (mayfly status; waiting)\n')
      hinted = true
    }
  }
  process.stderr.write('\rall released copies are deleted\n')
}

export async function orphansKeepCommand(keys: string[], options: OrphanOptions): Promise<void> {
  const secret = await secretFor(options)
  const answer = await call<{ kept: number; hold_lifted: boolean }>(options, secret, 'POST', '/api/cluster/orphans/keep', keysBody(keys))
  process.stderr.write(
    `kept ${answer.kept} copies: they stay on their nodes and are never deleted (\`mayfly orphans delete KEY…\` releases them later)` +
      `${answer.hold_lifted ? '; the hold is lifted' : ''}\n`,
  )
}

export async function orphansHoldCommand(options: OrphanOptions): Promise<void> {
  const secret = await secretFor(options)
  const answer = await call<{ hold: { reason: string; since: string } }>(options, secret, 'POST', '/api/cluster/orphans/hold')
  process.stderr.write(`holding (${answer.hold.reason} since ${answer.hold.since}): no copy of an unknown blob is deleted until \`mayfly orphans delete\` or \`keep\`\n`)
}
