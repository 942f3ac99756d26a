// Every test client is 127.0.0.1, so the per-client rate limits (60 uploads a
// minute by default) would throttle any load a test makes. The helpers that
// start gateways turn them off unless a test sets them: the rate-limit tests
// (test/e2e/rate-limits.test.ts) do.
export const NO_RATE_LIMITS: Record<string, string> = {
  MAYFLY_RATE_LIMIT_UPLOADS: '0',
  MAYFLY_RATE_LIMIT_DOWNLOADS: '0',
  MAYFLY_RATE_LIMIT_PASSWORD_ATTEMPTS: '0',
}
