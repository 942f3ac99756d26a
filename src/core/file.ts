// Files, blobs, replicas and variants: the domain records every adapter
// stores and every service reads. No I/O here.

/** One stored object on the storage nodes, addressed by its key. */
export interface BlobRecord {
  key: string
  size: number
  sha256: string
}

/** A shared file: the link's metadata, pointing at one blob. */
export interface FileRecord {
  id: string
  blobKey: string
  name: string
  mime: string
  size: number
  sha256: string
  createdAt: Date
  expiresAt: Date
  /** null: unlimited */
  maxDownloads: number | null
  downloads: number
  /** scrypt hash, see core/secrets.ts; null: no password */
  passwordHash: string | null
  deleteTokenHash: string
  deletedAt: Date | null
  /** when the last allowed download was claimed */
  exhaustedAt: Date | null
  /** when the sweeper removed its bytes from every node */
  purgedAt: Date | null
}

export type FileStatus = 'active' | 'expired' | 'download_limit_reached' | 'deleted'

export type VariantName = 'thumbnail' | 'compressed'
export const VARIANT_NAMES: readonly VariantName[] = ['thumbnail', 'compressed']

export type VariantState = 'pending' | 'ready' | 'failed' | 'skipped'

export interface VariantRecord {
  fileId: string
  name: VariantName
  state: VariantState
  /** set when ready */
  blob: BlobRecord | null
  mime: string | null
  /** why it failed or was skipped */
  reason: string | null
}

export function fileStatus(file: FileRecord, now: Date): FileStatus {
  if (file.deletedAt !== null) return 'deleted'
  if (file.maxDownloads !== null && file.downloads >= file.maxDownloads) return 'download_limit_reached'
  if (file.expiresAt.getTime() <= now.getTime()) return 'expired'
  return 'active'
}

/** When the link died, or null while it lives. The sweeper counts the grace period from here. */
export function diedAt(file: FileRecord, now: Date): Date | null {
  const times = [file.deletedAt, file.exhaustedAt, file.expiresAt.getTime() <= now.getTime() ? file.expiresAt : null]
  const dead = times.filter((t): t is Date => t !== null)
  if (dead.length === 0) return null
  return new Date(Math.min(...dead.map((t) => t.getTime())))
}

export function downloadsRemaining(file: FileRecord): number | null {
  return file.maxDownloads === null ? null : Math.max(0, file.maxDownloads - file.downloads)
}

/** Images sharp can read and we make variants of. Everything else is `skipped`. */
export const IMAGE_MIME_TYPES: ReadonlySet<string> = new Set([
  'image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/avif', 'image/tiff', 'image/heic', 'image/heif',
])
