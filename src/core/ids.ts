// Ids and blob keys: 128 random bits, base64url, 22 characters. File ids are
// unguessable (DESIGN §3); blob keys share the shape so that a storage node
// can validate a key with one regular expression (no path traversal, §4).
import { createHash, randomBytes } from 'node:crypto'

export const ID_PATTERN = /^[A-Za-z0-9_-]{22}$/

/**
 * A new id. None starts with `-`: a command line would take it for an option
 * (`mayfly download -Tk0…` is refused by every argument parser), so those are
 * drawn again; that costs well under a bit of the 128.
 */
export function newId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url')
    if (!id.startsWith('-')) return id
  }
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
