// Numbers for the report: percentiles of one phase's latencies and medians
// across the repeated runs (the machine is noisy; one run proves little).

/** The q-quantile (0..1) of unsorted values, nearest-rank; NaN when empty. */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = Float64Array.from(values).sort()
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank]!
}

/** The median; the mean of the two middle values for an even count; NaN when empty or all NaN. */
export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (finite.length === 0) return Number.NaN
  const mid = finite.length >> 1
  return finite.length % 2 === 1 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2
}

export function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0)
}

export const MiB = 1024 * 1024
export const KiB = 1024
