// The optional fields of an upload (DESIGN §3), checked one by one as the
// form delivers them, so that a bad one is refused before the file part that
// follows it is stored (issue 7, bug 1).
import { Invalid } from '../../core/errors.ts'

export const UPLOAD_FIELDS = ['max_downloads', 'expires_in', 'password'] as const
export type UploadField = (typeof UPLOAD_FIELDS)[number]

export interface UploadOptions {
  maxDownloads: number | null
  expiresInSeconds: number
  password: string | null
}

export interface ExpiryLimits {
  defaultExpiresInSeconds: number
  maxExpiresInSeconds: number
}

/** the largest max_downloads the metadata keeps (a PostgreSQL integer, with room) */
const MAX_DOWNLOADS_LIMIT = 2_000_000_000
const MAX_PASSWORD_LENGTH = 1024

export function isUploadField(name: string): name is UploadField {
  return (UPLOAD_FIELDS as readonly string[]).includes(name)
}

/** What an upload with none of the optional fields gets. */
export function defaultUploadOptions(limits: ExpiryLimits): UploadOptions {
  return { maxDownloads: null, expiresInSeconds: limits.defaultExpiresInSeconds, password: null }
}

/**
 * Checks one field and sets it on `options`; throws Invalid('invalid_field').
 * A blank value means "not set": it is what a browser sends for a number box
 * left empty. expires_in is capped at the server maximum, however long the
 * number.
 */
export function applyUploadField(options: UploadOptions, name: UploadField, raw: string, limits: ExpiryLimits): void {
  const value = raw.trim()
  switch (name) {
    case 'max_downloads': {
      if (value === '') return void (options.maxDownloads = null)
      const count = wholeNumber(value)
      if (count === null || count < 1 || count > MAX_DOWNLOADS_LIMIT) {
        throw new Invalid(`max_downloads must be a whole number from 1 to ${MAX_DOWNLOADS_LIMIT}, got ${JSON.stringify(raw)}`, 'invalid_field')
      }
      options.maxDownloads = count
      return
    }
    case 'expires_in': {
      if (value === '') return void (options.expiresInSeconds = limits.defaultExpiresInSeconds)
      const seconds = wholeNumber(value)
      if (seconds === null || seconds < 1) {
        throw new Invalid(`expires_in must be a whole number of seconds, at least 1, got ${JSON.stringify(raw)}`, 'invalid_field')
      }
      options.expiresInSeconds = Math.min(seconds, limits.maxExpiresInSeconds)
      return
    }
    case 'password': {
      // not trimmed: spaces may be part of a password; an empty one is none
      if (raw === '') return void (options.password = null)
      if (raw.length > MAX_PASSWORD_LENGTH) throw new Invalid(`password is longer than ${MAX_PASSWORD_LENGTH} characters`, 'invalid_field')
      options.password = raw
    }
  }
}

/** Digits only; a number too long to be exact is still a (huge) number, so a cap applies to it. */
function wholeNumber(value: string): number | null {
  return /^\d+$/.test(value) ? Number(value) : null
}
