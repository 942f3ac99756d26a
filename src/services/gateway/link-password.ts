// A link's password as clients send it (`X-Mayfly-Password`), and its check.
// The same rule for the bytes (download-routes.ts) and for what a file is
// (GET /api/files/:id): a protected file shows neither without its password.
import type { FastifyRequest } from 'fastify'
import { Unauthorized } from '../../core/errors.ts'
import type { FileRecord } from '../../core/file.ts'
import { passwordMatches } from '../../core/secrets.ts'

/** The password of the X-Mayfly-Password header; undefined when absent or blank. */
export function passwordFromHeader(req: FastifyRequest): string | undefined {
  const value = req.headers['x-mayfly-password']
  return typeof value === 'string' && value !== '' ? value : undefined
}

/** Throws Unauthorized (`password_required`, `wrong_password`) unless the file has no password or `password` is it. */
export async function checkPassword(file: FileRecord, password: string | undefined): Promise<void> {
  if (file.passwordHash === null) return
  if (password === undefined || password === '') throw new Unauthorized('this file is protected by a password', 'password_required')
  // scrypt of a huge string is work an attacker could make us do
  if (password.length > 1024 || !(await passwordMatches(password, file.passwordHash))) {
    throw new Unauthorized('wrong password', 'wrong_password')
  }
}
