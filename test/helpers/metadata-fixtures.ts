// Rows for MetadataStore tests: a file with fresh ids (contract suites share
// one database per run, so every test makes its own), and a ready variant.
import { randomBytes } from 'node:crypto'
import { derivedKey, newId } from '../../src/core/ids.ts'
import type { VariantRecord } from '../../src/core/file.ts'
import type { NewFile } from '../../src/ports.ts'

export const HOUR = 3600_000

/** A live file with a fresh id and blob key, on nodes n1 and n2, expiring in an hour. */
export function newFile(overrides: Partial<NewFile> = {}): NewFile {
  const now = new Date()
  return {
    id: newId(),
    blob: { key: newId(), size: 5_000_000_000, sha256: randomBytes(32).toString('hex') },
    replicas: ['n1', 'n2'],
    name: 'cat.jpg',
    mime: 'image/jpeg',
    createdAt: now,
    expiresAt: new Date(now.getTime() + HOUR),
    maxDownloads: null,
    passwordHash: null,
    deleteTokenHash: 'hash',
    variants: [],
    ...overrides,
  }
}

/** The ready variant `name` of a file whose original blob is `sourceKey`. */
export function readyVariant(fileId: string, sourceKey: string, name: 'thumbnail' | 'compressed'): VariantRecord {
  return {
    fileId, name, state: 'ready', mime: 'image/webp', reason: null,
    blob: { key: derivedKey(sourceKey, name), size: 1234, sha256: 'ab'.repeat(32) },
  }
}
