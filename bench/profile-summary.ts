// Summarises V8 CPU profiles (.cpuprofile, as written by `npm run bench --
// --cpu-prof DIR`): per profile, the functions with the most self time, and
// the share of time by script (node internals, our src, each dependency).
//   node bench/profile-summary.ts DIR_OR_FILES... [--top N]
import { readdir, readFile, stat } from 'node:fs/promises'
import { basename, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const REPO = fileURLToPath(new URL('..', import.meta.url))

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}

interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

async function files(args: string[]): Promise<string[]> {
  const out: string[] = []
  for (const a of args) {
    if ((await stat(a)).isDirectory()) {
      out.push(...(await readdir(a)).filter((f) => f.endsWith('.cpuprofile')).sort().map((f) => join(a, f)))
    } else {
      out.push(a)
    }
  }
  return out
}

/** node_modules/<pkg>, src/…, node:internal, or (program)/(garbage collector)/(idle). */
function where(url: string, fn: string): string {
  if (url === '') return fn.startsWith('(') ? fn : '(native)'
  const path = url.replace(/^file:\/\//, '')
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)
  if (pkg !== null) return pkg[1]!
  if (path.startsWith('node:')) return 'node internals'
  return relative(REPO, path)
}

async function summarise(file: string, top: number): Promise<string> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<string, number>()
  const byScript = new Map<string, number>()
  let total = 0
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0
    const node = byId.get(id)
    if (node === undefined) return
    const { functionName, url, lineNumber } = node.callFrame
    const script = where(url, functionName)
    const key = `${functionName || '(anonymous)'}  ${url === '' ? '' : `${script === 'node internals' ? url : script}:${lineNumber + 1}`}`
    self.set(key, (self.get(key) ?? 0) + dt)
    byScript.set(script, (byScript.get(script) ?? 0) + dt)
    total += dt
  })
  const pct = (v: number) => `${((100 * v) / total).toFixed(1).padStart(5)}%`
  const lines = [`${basename(file)}: ${(total / 1e6).toFixed(1)} s sampled`]
  lines.push('  self time by function:')
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${pct(v)}  ${k}`)
  lines.push('  self time by script or package:')
  for (const [k, v] of [...byScript].sort((a, b) => b[1] - a[1]).slice(0, 12)) lines.push(`    ${pct(v)}  ${k}`)
  return lines.join('\n')
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } })
if (positionals.length === 0) {
  console.error('usage: node bench/profile-summary.ts DIR_OR_FILES... [--top N]')
  process.exit(2)
}
for (const f of await files(positionals)) console.log(`${await summarise(f, Number(values.top))}\n`)
