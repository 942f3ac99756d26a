// Where the copies of a new blob go: distinct zones first, then any node,
// each pick weighted by free space (so fuller nodes fill more slowly).
// No I/O here; `random` is a parameter so tests can pin it.

/**
 * MAYFLY_PLACEMENT: what copies of a blob are kept apart in.
 * - zones: distinct zones first (a zone may fail whole), then distinct nodes.
 * - nodes: distinct nodes only, ignoring zones (for one zone, or zones too
 *   uneven to spread over: with zones, a lone node in its own zone gets a copy
 *   of every blob).
 */
export type PlacementStrategy = 'zones' | 'nodes'

/**
 * The nodes as placement sees them: `zone` is what copies are kept apart in
 * (with `nodes`, every node is a zone of its own), so every zone rule
 * (placement, repair, drain, rebalance) follows the strategy.
 */
export function inDomains<T extends { id: string; zone: string }>(nodes: readonly T[], strategy: PlacementStrategy): T[] {
  return strategy === 'zones' ? [...nodes] : nodes.map((n) => ({ ...n, zone: `node:${n.id}` }))
}

export interface PlacementCandidate {
  id: string
  zone: string
  freeBytes: number
}

/**
 * Picks up to `count` distinct nodes. While some zone is not yet used, the
 * next pick comes from an unused zone; when every zone holds a copy, it comes
 * from any remaining node. With fewer zones than copies, zones hold more than
 * one copy; with fewer nodes than copies, fewer nodes are returned.
 * `usedZones`: zones that already hold a copy (repair adds to existing ones).
 */
export function placeReplicas<T extends PlacementCandidate>(
  candidates: readonly T[],
  count: number,
  random: () => number = Math.random,
  usedZones: ReadonlySet<string> = new Set(),
): T[] {
  const remaining = [...candidates]
  const chosen: T[] = []
  const zones = new Set(usedZones)
  while (chosen.length < count && remaining.length > 0) {
    const fresh = remaining.filter((n) => !zones.has(n.zone))
    const pool = fresh.length > 0 ? fresh : remaining
    const pick = pickWeighted(pool, random)
    chosen.push(pick)
    zones.add(pick.zone)
    remaining.splice(remaining.indexOf(pick), 1)
  }
  return chosen
}

function pickWeighted<T extends PlacementCandidate>(pool: readonly T[], random: () => number): T {
  // +1 so that full nodes keep a tiny chance and an all-zero pool still works
  const weights = pool.map((n) => Math.max(0, n.freeBytes) + 1)
  const total = weights.reduce((a, b) => a + b, 0)
  let roll = random() * total
  for (let i = 0; i < pool.length; i++) {
    roll -= weights[i]!
    if (roll < 0) return pool[i]!
  }
  return pool[pool.length - 1]!
}
