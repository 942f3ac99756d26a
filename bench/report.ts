// Medians over the runs, the ratios to the baselines, the targets of issue 2
// and whether each is met; printed as tables and written as JSON.
import type { PhaseResult } from './load.ts'
import type { VariantResult } from './image-variants.ts'
import type { MemoryResult } from './memory.ts'
import type { Mode } from './mayfly.ts'
import type { RawRecipe } from './raw-sharp.ts'
import { median, sum } from './stats.ts'
import { PHASES, type PhaseName } from './throughput.ts'

export interface RunResult {
  /** by target name: nginx, mayfly-real, mayfly-embedded */
  throughput: Record<string, Record<PhaseName, PhaseResult>>
  variants: { rawSharp: Record<RawRecipe, VariantResult>; mayfly: Partial<Record<Mode, VariantResult>> } | null
}

export interface PhaseSummary {
  opsPerSec: number
  mibPerSec: number
  p50Ms: number
  p99Ms: number
  errors: number
  ops: number
}

export interface Target {
  key: string
  label: string
  kind: 'min' | 'max'
  goal: number
  /** unit of the figure, for printing */
  unit: string
}

export const TARGETS: Target[] = [
  { key: '1MiB-up', label: '1 MiB uploads, Mayfly/nginx', kind: 'min', goal: 0.3, unit: '' },
  { key: '1MiB-down', label: '1 MiB downloads, Mayfly/nginx', kind: 'min', goal: 0.5, unit: '' },
  { key: '4KiB-up', label: '4 KiB uploads, Mayfly/nginx', kind: 'min', goal: 0.1, unit: '' },
  { key: '4KiB-down', label: '4 KiB downloads, Mayfly/nginx', kind: 'min', goal: 0.2, unit: '' },
  { key: 'variants', label: 'image variants, Mayfly/raw sharp', kind: 'min', goal: 0.8, unit: '' },
  { key: 'memory-up', label: 'gateway RSS growth, 1 GiB upload', kind: 'max', goal: 64, unit: ' MiB' },
  { key: 'memory-down', label: 'gateway RSS growth, 1 GiB download', kind: 'max', goal: 64, unit: ' MiB' },
]

export interface Summary {
  throughput: Record<string, Record<PhaseName, PhaseSummary>>
  /** per mode: target key → figure (ratio or MiB) */
  figures: Partial<Record<Mode, Record<string, number>>>
  /** per mode: phase → the median of the per-run ratios (paired in time; for comparison with the ratio of medians) */
  pairedRatios: Partial<Record<Mode, Record<string, number>>>
  met: Partial<Record<Mode, Record<string, boolean>>>
  /** rawSharpPhotosPerSec: the faster recipe's median, the reference of the variant target */
  variants: { rawSharpPhotosPerSec: number; rawRecipes: Record<RawRecipe, number>; mayflyPhotosPerSec: Partial<Record<Mode, number>>; failed: Partial<Record<Mode, number>> } | null
}

export function summarize(runs: RunResult[], memory: Partial<Record<Mode, MemoryResult>>, modes: Mode[]): Summary {
  const targets = Object.keys(runs[0]?.throughput ?? {})
  const throughput: Summary['throughput'] = {}
  for (const t of targets) {
    const byPhase = {} as Record<PhaseName, PhaseSummary>
    for (const p of PHASES) {
      const rs = runs.map((r) => r.throughput[t]?.[p]).filter((r): r is PhaseResult => r !== undefined)
      byPhase[p] = {
        opsPerSec: median(rs.map((r) => r.opsPerSec)),
        mibPerSec: median(rs.map((r) => r.mibPerSec)),
        p50Ms: median(rs.map((r) => r.p50Ms)),
        p99Ms: median(rs.map((r) => r.p99Ms)),
        errors: sum(rs.map((r) => r.errors)),
        ops: sum(rs.map((r) => r.ops)),
      }
    }
    throughput[t] = byPhase
  }
  const withVariants = runs.filter((r) => r.variants !== null)
  const variants: Summary['variants'] =
    withVariants.length === 0
      ? null
      : variantSummary(withVariants, modes)
  const figures: Summary['figures'] = {}
  const pairedRatios: Summary['pairedRatios'] = {}
  const met: Summary['met'] = {}
  for (const m of modes) {
    const f: Record<string, number> = {}
    const paired: Record<string, number> = {}
    const nginx = throughput.nginx
    const mine = throughput[`mayfly-${m}`]
    for (const p of PHASES) {
      if (nginx !== undefined && mine !== undefined) f[p] = mine[p].opsPerSec / nginx[p].opsPerSec
      paired[p] = median(runs.map((r) => (r.throughput[`mayfly-${m}`]?.[p].opsPerSec ?? Number.NaN) / (r.throughput.nginx?.[p].opsPerSec ?? Number.NaN)))
    }
    if (variants !== null) f.variants = (variants.mayflyPhotosPerSec[m] ?? Number.NaN) / variants.rawSharpPhotosPerSec
    const mem = memory[m]
    if (mem !== undefined) {
      f['memory-up'] = mem.uploadGrowthMiB
      f['memory-down'] = mem.downloadGrowthMiB
    }
    figures[m] = f
    pairedRatios[m] = paired
    met[m] = Object.fromEntries(
      TARGETS.filter((t) => Number.isFinite(f[t.key])).map((t) => [t.key, t.kind === 'min' ? f[t.key]! >= t.goal : f[t.key]! < t.goal]),
    )
  }
  return { throughput, figures, pairedRatios, met, variants }
}

function variantSummary(runs: RunResult[], modes: Mode[]): NonNullable<Summary['variants']> {
  const raw = (recipe: RawRecipe) => median(runs.map((r) => r.variants!.rawSharp[recipe].photosPerSec))
  const rawRecipes = { pipelines: raw('pipelines'), chained: raw('chained') }
  return {
    rawSharpPhotosPerSec: Math.max(rawRecipes.pipelines, rawRecipes.chained),
    rawRecipes,
    mayflyPhotosPerSec: Object.fromEntries(modes.map((m) => [m, median(runs.map((r) => r.variants!.mayfly[m]?.photosPerSec ?? Number.NaN))])),
    failed: Object.fromEntries(modes.map((m) => [m, sum(runs.map((r) => r.variants!.mayfly[m]?.failed ?? 0))])),
  }
}

const PHASE_LABEL: Record<PhaseName, string> = { '1MiB-up': '1 MiB up', '1MiB-down': '1 MiB down', '4KiB-up': '4 KiB up', '4KiB-down': '4 KiB down' }

export function formatReport(s: Summary, modes: Mode[], memory: Partial<Record<Mode, MemoryResult>>, header: string): string {
  const out: string[] = [header, '']
  const n = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '-')
  out.push(`${'phase'.padEnd(11)} ${'target'.padEnd(16)} ${'ops/s'.padStart(9)} ${'MiB/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)} ${'ratio'.padStart(6)}`)
  for (const p of PHASES) {
    let first = true
    for (const [t, byPhase] of Object.entries(s.throughput)) {
      const r = byPhase[p]
      const mode = t.replace(/^mayfly-/, '') as Mode
      const ratio = t === 'nginx' ? '' : n(s.figures[mode]?.[p] ?? Number.NaN, 3)
      out.push(
        `${(first ? PHASE_LABEL[p] : '').padEnd(11)} ${t.padEnd(16)} ${n(r.opsPerSec).padStart(9)} ${n(r.mibPerSec).padStart(8)} ${n(r.p50Ms, 2).padStart(8)} ${n(r.p99Ms, 2).padStart(8)} ${String(r.errors).padStart(7)} ${ratio.padStart(6)}`,
      )
      first = false
    }
  }
  if (s.variants !== null) {
    const v = s.variants
    out.push('')
    out.push(
      `image variants (photos/s): raw sharp ${n(v.rawSharpPhotosPerSec, 2)} (pipelines ${n(v.rawRecipes.pipelines, 2)}, chained ${n(v.rawRecipes.chained, 2)})` +
        modes.map((m) => `, mayfly-${m} ${n(v.mayflyPhotosPerSec[m] ?? Number.NaN, 2)} (${v.failed[m] ?? 0} failed)`).join(''),
    )
  }
  for (const m of modes) {
    const mem = memory[m]
    if (mem === undefined) continue
    out.push(
      `memory, mayfly-${m}: RSS ${n(mem.baselineMiB)} MiB before; +${n(mem.uploadGrowthMiB)} MiB during a ${mem.sizeMiB} MiB upload (${n(mem.uploadMiBPerSec)} MiB/s), +${n(mem.downloadGrowthMiB)} MiB during its download (${n(mem.downloadMiBPerSec)} MiB/s)`,
    )
  }
  out.push('')
  out.push(`${'target'.padEnd(36)} ${'goal'.padEnd(9)} ${modes.map((m) => `${m.padStart(9)}       `).join(' ')}`)
  for (const t of TARGETS) {
    const cells = modes.map((m) => {
      const f = s.figures[m]?.[t.key]
      if (f === undefined || !Number.isFinite(f)) return `${'-'.padStart(9)} ${'skipped'.padEnd(6)}`
      const ok = s.met[m]?.[t.key] === true
      return `${n(f, t.unit === '' ? 3 : 1).padStart(9)} ${(ok ? 'met' : 'MISSED').padEnd(6)}`
    })
    out.push(`${t.label.padEnd(36)} ${`${t.kind === 'min' ? '≥' : '<'} ${t.goal}${t.unit}`.padEnd(9)} ${cells.join(' ')}`)
  }
  out.push('(ratios are of the medians of ops/s; the targets are judged on the real mode)')
  return out.join('\n')
}
