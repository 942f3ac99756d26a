// The chaos run's table (issue 10): per fault, the client-visible pause of
// uploads and downloads (the longest time without a success), the errors
// seen, next to the floor INFRA-NOTES measured for that tier; then each
// invariant with what it was checked on, and every violation by name.
import type { ChaosResult } from './run.ts'

export interface FaultResult {
  fault: string
  target: string
  /** INFRA-NOTES' floor; null: no pause expected at all */
  floorMs: number | null
  /** from the fault to the cluster healed, plus 3 s */
  seconds: number
  uploadPauseMs: number
  downloadPauseMs: number
  operations: number
  errors: number
  errorSamples: string[]
}

const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`

export function printReport(r: ChaosResult): void {
  const rows = [['fault', 'target', 'window', 'upload pause', 'download pause', 'floor (INFRA-NOTES)', 'errors / ops']]
  for (const f of r.faults) {
    rows.push([f.fault, f.target, s(f.seconds * 1000), s(f.uploadPauseMs), s(f.downloadPauseMs), f.floorMs === null ? 'none' : s(f.floorMs), `${f.errors} / ${f.operations}`])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  const line = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`
  const out = [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)]
  out.push('')
  for (const f of r.faults) if (f.errorSamples.length > 0) out.push(`${f.fault}: ${f.errorSamples.join('; ')}`)
  out.push('')
  for (const c of r.verdict.checked) out.push(`${c.violations === 0 ? 'holds ' : 'BROKEN'}  ${c.invariant} (checked on ${c.files})`)
  for (const v of r.verdict.violations.slice(0, 50)) {
    const op = v.operation === undefined ? '' : ` [${v.operation.kind} at ${new Date(v.operation.startedAt).toISOString()}, during ${v.operation.fault ?? 'no fault'}]`
    out.push(`  ${v.invariant}: file ${v.fileId}: ${v.detail}${op}`)
  }
  out.push('', `lab started in ${r.lab.startSeconds ?? '?'} s; ${r.history.length} operations; history and verdict in ${r.out}`)
  process.stdout.write(`${out.join('\n')}\n`)
}
