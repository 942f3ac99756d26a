// The fence a replication manager's request to a storage node carries:
// header X-Mayfly-Fence: <lease name>:<token> (services/storage-node/fences.ts).
// No I/O here.

export const FENCE_HEADER = 'x-mayfly-fence'

/** The X-Mayfly-Fence header's value for a lease. */
export function fenceHeader(fence: { name: string; token: number }): string {
  return `${fence.name}:${fence.token}`
}

/** Parses X-Mayfly-Fence; null when absent, undefined when malformed. */
export function parseFence(value: string | string[] | undefined): { name: string; token: number } | null | undefined {
  if (value === undefined) return null
  if (typeof value !== 'string') return undefined
  const at = value.lastIndexOf(':')
  const token = Number(value.slice(at + 1))
  if (at <= 0 || !Number.isSafeInteger(token) || token < 1) return undefined
  return { name: value.slice(0, at), token }
}
