// Rows as the drivers return them, and their domain records. Sizes are
// bigint columns: pg returns them as strings, PGlite as numbers, so both go
// through Number() (sizes stay far below 2^53).
import type { FileRecord, VariantName, VariantRecord, VariantState } from '../../core/file.ts'
import type { NodeRecord } from '../../core/node.ts'

export interface FileRow {
  id: string
  blob_key: string
  name: string
  mime: string
  size: string | number
  sha256: string
  created_at: Date
  expires_at: Date
  max_downloads: number | null
  downloads: number
  password_hash: string | null
  delete_token_hash: string
  deleted_at: Date | null
  exhausted_at: Date | null
  purged_at: Date | null
}

export interface VariantRow {
  file_id: string
  name: string
  state: string
  blob_key: string | null
  size: string | number | null
  sha256: string | null
  mime: string | null
  reason: string | null
}

export interface NodeRow {
  id: string
  url: string
  zone: string
  version: string
  capacity_bytes: string | number
  free_bytes: string | number
  used_bytes: string | number
  blob_count: string | number
  quarantined: string | number
  last_heartbeat: Date
  heartbeat_age_ms: number
  draining: boolean
  lost_at: Date | null
}

export function toFile(row: FileRow): FileRecord {
  return {
    id: row.id,
    blobKey: row.blob_key,
    name: row.name,
    mime: row.mime,
    size: Number(row.size),
    sha256: row.sha256,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    maxDownloads: row.max_downloads,
    downloads: row.downloads,
    passwordHash: row.password_hash,
    deleteTokenHash: row.delete_token_hash,
    deletedAt: row.deleted_at,
    exhaustedAt: row.exhausted_at,
    purgedAt: row.purged_at,
  }
}

export function toVariant(row: VariantRow): VariantRecord {
  const blob =
    row.blob_key !== null && row.sha256 !== null && row.size !== null
      ? { key: row.blob_key, size: Number(row.size), sha256: row.sha256 }
      : null
  return {
    fileId: row.file_id,
    name: row.name as VariantName,
    state: row.state as VariantState,
    blob,
    mime: row.mime,
    reason: row.reason,
  }
}

export function toNode(row: NodeRow): NodeRecord {
  return {
    id: row.id,
    url: row.url,
    zone: row.zone,
    version: row.version,
    capacityBytes: Number(row.capacity_bytes),
    freeBytes: Number(row.free_bytes),
    usedBytes: Number(row.used_bytes),
    blobCount: Number(row.blob_count),
    quarantined: Number(row.quarantined),
    lastHeartbeat: row.last_heartbeat,
    heartbeatAgeMs: row.heartbeat_age_ms,
    draining: row.draining,
    lostAt: row.lost_at,
  }
}
