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

/**
 * The password of the X-Mayfly-Password header; undefined when absent or
 * blank. The header carries it in UTF-8, as curl and `mayfly download` send
 * it (a password set in the upload form may be any text); Node reads header
 * bytes as Latin-1, so they are decoded again, unless they are not UTF-8 (a
 * client that sent Latin-1: then they mean what they say).
 */
export function passwordFromHeader(req: FastifyRequest): string | undefined {
  const value = req.headers['x-mayfly-password']
  if (typeof value !== 'string' || value === '') return undefined
  const bytes = Buffer.from(value, 'latin1')
  const utf8 = bytes.toString('utf8')
  return Buffer.from(utf8, 'utf8').equals(bytes) ? utf8 : value
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
