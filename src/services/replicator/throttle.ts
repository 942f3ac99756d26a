// The repair bandwidth cap (MAYFLY_REPAIR_MIB_PER_SECOND): a token bucket in
// bytes. A copy takes its size before it starts; a copy larger than the
// bucket runs into debt, and the copies after it wait the debt off, so the
// average rate stays at the cap whatever the blob sizes.

export interface Throttle {
  /** Resolves when `bytes` may be sent; resolves at once when stopped. */
  take(bytes: number): Promise<void>
  /** Wakes every waiter (shutdown, lost leadership). */
  stop(): void
}

export function createThrottle(bytesPerSecond: number, now: () => number = Date.now): Throttle {
  // one second of burst: small blobs go out back to back, big ones wait their turn
  const capacity = bytesPerSecond
  let tokens = capacity
  let refilledAt = now()
  let stopped = false
  const waiters = new Set<() => void>()

  function refill(): void {
    const t = now()
    tokens = Math.min(capacity, tokens + ((t - refilledAt) / 1000) * bytesPerSecond)
    refilledAt = t
  }

  return {
    async take(bytes) {
      for (;;) {
        if (stopped) return
        refill()
        if (tokens > 0) {
          tokens -= bytes
          return
        }
        const waitMs = Math.ceil((-tokens / bytesPerSecond) * 1000) + 1
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, waitMs)
          function done() {
            clearTimeout(timer)
            waiters.delete(done)
            resolve()
          }
          waiters.add(done)
        })
      }
    },
    stop() {
      stopped = true
      for (const wake of [...waiters]) wake()
    },
  }
}
