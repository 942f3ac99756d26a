// Per-client rate limits (issue 8): uploads, downloads of the original, and
// password guesses on protected links, each a token bucket per client
// address in the RateLimiter (shared by every gateway through Redis; in one
// process in embedded mode). A refused request gets 429 `rate_limited` with
// Retry-After, before any work is done.
//
// - The client is req.ip: the socket's address, or X-Forwarded-For's from a
//   trusted proxy (MAYFLY_TRUSTED_PROXIES).
// - The cluster's own callers, with the cluster secret, are never counted;
//   storage nodes and health checks use routes that are not limited at all.
// - A limiter that cannot answer fails open for uploads and downloads (Redis
//   accelerates, it is not a dependency) and closed for password guesses (an
//   outage must not be a window for guessing): said once in the log per
//   outage, not per request.
// - A guess takes a token before the password is checked, so concurrent
//   guesses cannot outrun the limit; a right password gives it back, so an
//   owner who knows it is never slowed down.
import type { FastifyRequest } from 'fastify'
import { RateLimited, Unavailable } from '../../core/errors.ts'
import type { Logger } from '../../log.ts'
import type { RateLimiter } from '../../ports.ts'
import type { GatewaySettings } from './deps.ts'
import { hasClusterSecret } from './status-access.ts'

export type LimitedAction = keyof GatewaySettings['rateLimits']

export interface RateLimits {
  /** Throws RateLimited when this client did `action` too often lately (Unavailable for a password guess the limiter cannot count). */
  take(req: FastifyRequest, action: LimitedAction): Promise<void>
  /** gives back what take() took (a right password) */
  giveBack(req: FastifyRequest, action: LimitedAction): Promise<void>
}

const WHAT: Record<LimitedAction, string> = { upload: 'uploads', download: 'downloads', password: 'wrong passwords' }

export function createRateLimits(
  limiter: RateLimiter,
  limits: GatewaySettings['rateLimits'],
  clusterSecret: string,
  log: Logger,
  onRefused: (action: LimitedAction) => void = () => {},
): RateLimits {
  let away = false
  const counted = (req: FastifyRequest, action: LimitedAction) => limits[action].count > 0 && !hasClusterSecret(req, clusterSecret)
  const key = (req: FastifyRequest, action: LimitedAction) => `${action}:${req.ip}`

  return {
    async take(req, action) {
      if (!counted(req, action)) return
      let decision
      try {
        decision = await limiter.take(key(req, action), limits[action])
        if (away) log.info('rate limits counted again')
        away = false
      } catch (err) {
        if (!(err instanceof Unavailable)) throw err
        if (!away) log.warn({ err }, 'rate limiter unavailable: uploads and downloads go on uncounted, password guesses are refused until it is back')
        away = true
        if (action === 'password') throw new Unavailable('password attempts cannot be counted right now; try again in a moment')
        return
      }
      if (!decision.allowed) {
        onRefused(action)
        const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000))
        throw new RateLimited(`too many ${WHAT[action]} from your address; try again in ${seconds} s`, seconds)
      }
    },
    async giveBack(req, action) {
      if (!counted(req, action)) return
      // best effort: a give-back the limiter cannot take costs this client one try of its window
      await limiter.take(key(req, action), limits[action], -1).catch(() => undefined)
    },
  }
}
