// The web UI: upload page, share page and admin dashboard. Server-rendered
// HTML with a little script; every value from a user is escaped. The share
// page counts nothing, so link-preview bots cannot burn a limited link.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { downloadsRemaining, fileStatus, type FileRecord } from '../../core/file.ts'
import { formatBytes } from '../../core/bytes.ts'
import { isId } from '../../core/ids.ts'
import type { GatewayDeps } from './deps.ts'
import type { FileLookup } from './file-lookup.ts'

const STYLE = `body{font:16px system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:left}
.muted{color:#666}.bad{color:#b00}.ok{color:#070}img.preview{max-width:100%;border-radius:4px}button,input{font:inherit;padding:.4rem}
code{background:#f3f3f3;padding:.1rem .3rem}`

function page(title: string, body: string, script = ''): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body>${body}${script === '' ? '' : `<script>${script}</script>`}</body></html>`
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

const ERROR_HEADINGS: Record<string, string> = {
  password_required: 'This file needs a password',
  wrong_password: 'Wrong password',
  expired: 'This link is gone',
  download_limit_reached: 'This link is gone',
  deleted: 'This link is gone',
}

/**
 * An API error as a page, for a browser (http/errors.ts picks by Accept): the
 * same message the JSON carries, and a way on: back to the share page when
 * the error is about a file's download, else the upload page.
 */
export function errorPage(status: number, body: { error: string; message: string }, req: FastifyRequest): string {
  const heading =
    ERROR_HEADINGS[body.error] ??
    (status === 404 ? 'Not found' : status === 429 ? 'Too many requests' : status >= 500 ? 'Something went wrong' : `Error ${status}`)
  const id = /^\/(?:f|api\/download)\/([^/?#]+)/.exec(req.url)?.[1]
  const back =
    id !== undefined && isId(id) && (status === 401 || status === 503)
      ? `<a href="/f/${escapeHtml(id)}">${status === 401 ? 'Try again' : 'Back to the file'}</a>`
      : '<a href="/">Mayfly</a>'
  return page(heading, `<h1>${escapeHtml(heading)}</h1><p>${escapeHtml(body.message)}</p><p class="muted">${back}</p>`)
}

const UPLOAD_SCRIPT = `
const form = document.querySelector('form'), out = document.querySelector('#out'), bar = document.querySelector('progress')
form.addEventListener('submit', (e) => {
  e.preventDefault()
  const data = new FormData(form)
  for (const [k, v] of [...data.entries()]) if (v === '') data.delete(k)
  const xhr = new XMLHttpRequest()
  xhr.open('POST', '/api/upload')
  xhr.upload.onprogress = (p) => { if (p.lengthComputable) bar.value = p.loaded / p.total }
  xhr.onload = () => {
    const r = JSON.parse(xhr.responseText)
    out.textContent = ''
    if (xhr.status !== 201) { out.className = 'bad'; out.textContent = r.message; return }
    out.className = 'ok'
    const a = document.createElement('a'); a.href = r.share_url; a.textContent = r.share_url
    out.append('Share this link: ', a, document.createElement('br'), 'Delete token (keep it): ')
    const c = document.createElement('code'); c.textContent = r.delete_token; out.append(c)
  }
  xhr.onerror = () => { out.className = 'bad'; out.textContent = 'upload failed: network error' }
  xhr.send(data)
})`

const ADMIN_SCRIPT = `
const el = (t, text) => { const e = document.createElement(t); e.textContent = text; return e }
async function refresh() {
  const c = await (await fetch('/api/cluster')).json()
  const state = (n) => n.state + (n.draining ? ' (draining)' : '') + (n.lost_at ? ' (lost, copies remade)' : '')
  const rows = c.storage_nodes.map((n) => [n.id, n.zone, state(n), n.url, (n.used_bytes/2**20).toFixed(1) + ' MiB', n.blob_count, n.replicas, n.quarantined, n.last_heartbeat])
  const t = document.querySelector('#nodes'); t.replaceChildren()
  const head = document.createElement('tr'); for (const h of ['node','zone','state','url','used','blobs','replicas','quarantined','last heartbeat']) head.append(el('th', h)); t.append(head)
  for (const r of rows) { const tr = document.createElement('tr'); for (const v of r) tr.append(el('td', String(v))); tr.children[2].className = r[2] === 'up' ? 'ok' : 'bad'; t.append(tr) }
  const r = c.replication, m = r.manager
  document.querySelector('#replication').textContent =
    r.blobs_below_factor + ' blobs below the factor of ' + r.factor + ' (' + ((r.bytes_to_copy ?? 0)/2**20).toFixed(1) + ' MiB to copy, ' +
    (r.copy_rate_bytes_per_second/2**20).toFixed(1) + ' MiB/s), ' + r.blobs_above_factor + ' above it, ' + r.blobs_without_replica + ' without any copy. ' +
    (m.active ? 'Replication manager ' + m.holder + ', active since ' + m.leader_since + '.' : 'No replication manager is running.')
  document.querySelector('#replication').className = r.blobs_below_factor === 0 && m.active ? 'ok' : 'bad'
  const md = c.metadata.detail ?? {}
  const meta = document.querySelector('#metadata')
  meta.className = c.metadata.ok ? 'ok' : 'bad'
  const behind = (r) => r.lag_bytes === null ? 'lag unknown' : (r.lag_bytes/2**10).toFixed(1) + ' KiB behind' + (r.lag_seconds === null ? '' : ' (' + r.lag_seconds.toFixed(1) + ' s)')
  meta.textContent = md.url === undefined ? (c.metadata.ok ? 'Embedded metadata (PGlite, one process).' : 'Metadata store unavailable.') :
    'PostgreSQL ' + md.url + ': ' + (md.primary ? 'primary ' + md.primary + ' (timeline ' + md.timeline + '). ' : 'no primary takes writes (' + (md.error ?? '') + '). ') +
    'Replicas: ' + ((md.replicas ?? []).map((r) => r.address + ' ' + r.state + ', ' + behind(r)).join('; ') || 'none') + '. ' +
    ((md.read_replicas ?? []).length ? 'Read replicas: ' + md.read_replicas.map((r) => r.url + (r.skipped ? ' skipped' : ' in use') + (r.lag_ms === null ? '' : ', ' + r.lag_ms + ' ms behind')).join('; ') + '. ' : '') +
    'Last failover ' + (md.last_failover_at ?? 'none seen') + '.'
  const d = c.cache.detail ?? {}
  const cache = document.querySelector('#cache')
  cache.className = c.cache.ok ? 'ok' : 'bad'
  cache.textContent = d.mode === undefined ? (c.cache.ok ? 'Embedded cache (one process).' : 'Cache unavailable.') :
    'Redis (' + d.mode + '): master ' + (d.master ?? 'unknown') + (c.cache.ok ? '' : ', unreachable: ' + (d.error ?? '')) + '. ' +
    (d.replicas ? 'Replicas: ' + (d.replicas.map((r) => r.address + ' ' + r.state + ', ' + r.offset_lag + ' bytes behind').join('; ') || 'none') + '. ' : '') +
    (d.sentinels ? d.sentinels_seeing_master + ' of ' + d.sentinels.length + ' Sentinels see the master (quorum ' + d.quorum + '); last failover ' + (d.last_failover_at ?? 'none seen') + '.' : '')
  const gw = document.querySelector('#gateways'); gw.replaceChildren()
  const gwHead = document.createElement('tr'); for (const h of ['gateway','url','pid','state','last heartbeat','started']) gwHead.append(el('th', h)); gw.append(gwHead)
  for (const g of c.gateways ?? []) {
    const tr = document.createElement('tr')
    for (const v of [g.id + (g.self ? ' (this one)' : ''), g.url, g.pid, g.state, (g.heartbeat_age_ms/1000).toFixed(1) + ' s ago', g.started_at]) tr.append(el('td', String(v)))
    tr.children[3].className = g.state === 'up' ? 'ok' : g.state === 'stopped' ? 'muted' : 'bad'; gw.append(tr)
  }
  document.querySelector('#tiers').textContent = JSON.stringify({ metadata: c.metadata, cache: c.cache, queue: c.queue, replication: c.replication, workers: c.workers, gateways: c.gateways }, null, 2)
}
refresh(); setInterval(refresh, 2000)`

export function registerPages(app: FastifyInstance, deps: GatewayDeps, files: FileLookup): void {
  const now = deps.now ?? (() => new Date())

  app.get('/', async (_req, reply) => {
    const body = `<h1>Mayfly</h1><p class="muted">Share a file with a link that expires.</p>
<form><p><input type="file" name="file" required></p>
<p><label>Expires in <select name="expires_in"><option value="3600">1 hour</option><option value="86400" selected>1 day</option><option value="604800">7 days</option></select></label>
<label>Max downloads <input type="number" name="max_downloads" min="1" placeholder="unlimited"></label></p>
<p><label>Password <input type="password" name="password" autocomplete="new-password" placeholder="none"></label></p>
<p><button>Upload</button> <progress value="0" max="1"></progress></p></form><p id="out"></p>
<p class="muted"><a href="/admin">cluster dashboard</a></p>`
    return reply.type('text/html; charset=utf-8').send(page('Mayfly', body, UPLOAD_SCRIPT))
  })

  app.get<{ Params: { id: string } }>('/f/:id', async (req, reply) => {
    // the primary's record: what remains is shown as every gateway shows it
    const file = isId(req.params.id) ? await files.current(req.params.id) : null
    reply.type('text/html; charset=utf-8').header('cache-control', 'no-store')
    if (file === null || file.purgedAt !== null) {
      return reply.status(404).send(page('Not found', '<h1>This link does not exist</h1>'))
    }
    const status = fileStatus(file, now())
    if (status !== 'active') {
      const why = { expired: 'It has expired.', download_limit_reached: 'It has reached its download limit.', deleted: 'It was deleted.' }[status]
      return reply.status(410).send(page('Gone', `<h1>This link is gone</h1><p>${why}</p>`))
    }
    // a protected file's name is as private as its bytes (issue 7, bug 14)
    return reply.send(page(file.passwordHash === null ? file.name : 'A protected file', sharePageBody(file, now())))
  })

  app.get('/admin', async (_req, reply) => {
    const body = `<h1>Mayfly cluster</h1><h2>Storage nodes</h2><table id="nodes"></table>
<h2>Gateways</h2><table id="gateways"></table>
<h2>Replication</h2><p id="replication"></p><h2>Metadata</h2><p id="metadata"></p><h2>Cache</h2><p id="cache"></p><h2>Tiers</h2><pre id="tiers"></pre>`
    return reply.type('text/html; charset=utf-8').send(page('Mayfly cluster', body, ADMIN_SCRIPT))
  })
}

function sharePageBody(file: FileRecord, now: Date): string {
  const id = escapeHtml(file.id)
  const remaining = downloadsRemaining(file)
  const minutes = Math.max(0, Math.round((file.expiresAt.getTime() - now.getTime()) / 60000))
  const left = `${remaining === null ? 'Unlimited downloads' : `${remaining} download${remaining === 1 ? '' : 's'} left`}, expires in ${minutes >= 120 ? `${Math.round(minutes / 60)} hours` : `${minutes} minutes`}.`
  // the preview shows a variant, which counts nothing, never the original: the
  // compressed one (a kept variant is smaller), else the thumbnail, else none
  const fallback = `if(this.dataset.tried){this.remove()}else{this.dataset.tried=1;this.src='/api/files/${id}/thumbnail'}`
  const preview =
    file.passwordHash === null && file.mime.startsWith('image/')
      ? `<p><img class="preview" src="/api/files/${id}/variants/compressed" alt="" onerror="${fallback}"></p>`
      : ''
  // A POST that the gateway answers as an attachment: the browser saves the
  // file and stays on this page, so a reload or a look at an image inline
  // never counts a second download (and no prefetch or preview bot posts).
  const password = file.passwordHash === null ? '' : '<input type="password" name="password" placeholder="password" required> '
  const action = `<form method="post" action="/f/${id}/download">${password}<button>Download</button></form>`
  const what =
    file.passwordHash === null
      ? `<h1>${escapeHtml(file.name)}</h1><p class="muted">${escapeHtml(file.mime)}, ${formatBytes(file.size)}</p>`
      : '<h1>A protected file</h1><p class="muted">Its name, type and size show with its password.</p>'
  return `${what}${preview}${action}<p class="muted">${left}</p>`
}
