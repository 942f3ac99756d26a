// The RateLimiter port in one process: a token bucket per key in a Map,
// bounded. A full bucket is the same as none, so when the map is full the
// least recently touched buckets go first (they are the fullest). Every call
// runs without awaiting, so each is atomic, as the Redis script is.
import type { RateDecision, RateLimiter } from '../../ports.ts'

export interface EmbeddedRateLimiterOptions {
  /** buckets kept at most (default 100,000) */
  maxKeys?: number
  /** the clock, for tests (default Date.now) */
  now?: () => number
}

export function createEmbeddedRateLimiter(opts: EmbeddedRateLimiterOptions = {}): RateLimiter {
  const maxKeys = opts.maxKeys ?? 100_000
  const now = opts.now ?? Date.now
  const buckets = new Map<string, { tokens: number; at: number }>()

  return {
    async take(key, limit, cost = 1): Promise<RateDecision> {
      const t = now()
      const found = buckets.get(key)
      buckets.delete(key)
      const refilled = found === undefined ? limit.count : Math.min(limit.count, found.tokens + ((t - found.at) * limit.count) / limit.windowMs)
      let tokens = refilled
      let decision: RateDecision = { allowed: true, retryAfterMs: 0 }
      if (cost > 0 && tokens < cost) {
        decision = { allowed: false, retryAfterMs: Math.ceil(((cost - tokens) * limit.windowMs) / limit.count) }
      } else {
        tokens = Math.min(limit.count, tokens - cost)
      }
      buckets.set(key, { tokens, at: t })
      while (buckets.size > maxKeys) buckets.delete(buckets.keys().next().value!)
      return decision
    },
    async close() {
      buckets.clear()
    },
  }
}
