// Pauses that can be ended early: a loop that waits between rounds must stop
// at once when its owner stops, without waiting out the timer. One of these
// replaces a hand-written timer-and-resolver pair in every such loop.

/** the longest delay setTimeout takes (longer ones fire at once) */
const MAX_TIMER_MS = 2 ** 31 - 1

export interface Pauses {
  /** Resolves after `ms`, or earlier when wake() names its lane (or none). Never rejects. */
  sleep(ms: number, lane?: string): Promise<void>
  /** Ends the pauses of one lane now, or every pause when no lane is given. */
  wake(lane?: string): void
}

export function createPauses(): Pauses {
  const sleepers = new Map<() => void, string>()
  return {
    sleep(ms, lane = '') {
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer)
          sleepers.delete(done)
          resolve()
        }
        const timer = setTimeout(done, Math.min(Math.max(0, ms), MAX_TIMER_MS))
        sleepers.set(done, lane)
      })
    },
    wake(lane) {
      for (const [done, of] of [...sleepers]) if (lane === undefined || of === lane) done()
    },
  }
}
