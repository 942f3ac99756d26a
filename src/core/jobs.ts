// The retry rule shared by the JobQueue adapters (embedded and RabbitMQ).

/** Longest wait between two attempts of a job, unless the adapter is told otherwise. */
export const DEFAULT_MAX_RETRY_DELAY_MS = 5 * 60_000

/** Wait after failed attempt `attempt` (1-based): base * 2^(attempt-1), capped. */
export function jobRetryDelayMs(attempt: number, baseMs: number, capMs = DEFAULT_MAX_RETRY_DELAY_MS): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1))
}
