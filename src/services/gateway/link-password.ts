// A link's password as clients send it (`X-Mayfly-Password`), and its check.
// The same rule for the bytes (download-routes.ts) and for what a file is
// (GET /api/files/:id): a protected file shows neither without its password.
// Guesses are rate limited per client (rate-limits.ts): each takes a try, a
// right one gives it back.
import type { FastifyRequest } from 'fastify'
import { Unauthorized } from '../../core/errors.ts'
import type { FileRecord } from '../../core/file.ts'
import { passwordMatches } from '../../core/secrets.ts'
import type { RateLimits } from './rate-limits.ts'

/** The password of the X-Mayfly-Password header; undefined when absent or blank. */
export function passwordFromHeader(req: FastifyRequest): string | undefined {
  const value = req.headers['x-mayfly-password']
  return typeof value === 'string' && value !== '' ? value : undefined
}

export type PasswordCheck = (req: FastifyRequest, file: FileRecord, password: string | undefined) => Promise<void>

/**
 * The check: throws Unauthorized (`password_required`, `wrong_password`)
 * unless the file has no password or `password` is it, and RateLimited once
 * this client guessed wrong too often.
 */
export function createPasswordCheck(limits: RateLimits): PasswordCheck {
  return async (req, file, password) => {
    if (file.passwordHash === null) return
    if (password === undefined || password === '') throw new Unauthorized('this file is protected by a password', 'password_required')
    await limits.take(req, 'password')
    // scrypt of a huge string is work an attacker could make us do
    if (password.length > 1024 || !(await passwordMatches(password, file.passwordHash))) {
      throw new Unauthorized('wrong password', 'wrong_password')
    }
    await limits.giveBack(req, 'password')
  }
}
