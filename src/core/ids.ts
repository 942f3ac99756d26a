// Ids and blob keys: 128 random bits, base64url, 22 characters. File ids are
// unguessable (DESIGN §3); blob keys share the shape so that a storage node
// can validate a key with one regular expression (no path traversal, §4).
import { createHash, randomBytes } from 'node:crypto'

export const ID_PATTERN = /^[A-Za-z0-9_-]{22}$/

export function newId(): string {
  return randomBytes(16).toString('base64url')
}

export function isId(value: string): boolean {
  return ID_PATTERN.test(value)
}

/**
 * The blob key of a derived object (a variant) is a function of its source
 * blob and its name, so that a redelivered job writes the same key again
 * instead of leaving a second copy behind.
 */
export function derivedKey(sourceKey: string, name: string): string {
  return createHash('sha256').update(`${sourceKey}/${name}`).digest().subarray(0, 16).toString('base64url')
}
