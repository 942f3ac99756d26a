// The JSON shapes of DESIGN §3 for a file, a storage node and a gateway.
import { downloadsRemaining, fileStatus, type FileRecord, type VariantRecord } from '../../core/file.ts'
import { gatewayState, type GatewayRecord } from '../../core/gateway.ts'
import type { NodeView } from '../../ports.ts'
import type { NodeUsage } from '../../ports.ts'

function fileUrls(base: string, id: string) {
  return {
    download_url: `${base}/api/download/${id}`,
    info_url: `${base}/api/files/${id}`,
    share_url: `${base}/f/${id}`,
  }
}

export function uploadView(base: string, file: FileRecord, deleteToken: string) {
  return { ...fileSummary(base, file), delete_token: deleteToken }
}

export function fileSummary(base: string, file: FileRecord) {
  return {
    id: file.id,
    name: file.name,
    size: file.size,
    mime: file.mime,
    sha256: file.sha256,
    created_at: file.createdAt.toISOString(),
    expires_at: file.expiresAt.toISOString(),
    max_downloads: file.maxDownloads,
    downloads_remaining: downloadsRemaining(file),
    password_protected: file.passwordHash !== null,
    ...fileUrls(base, file.id),
  }
}

export function fileInfoView(
  base: string,
  file: FileRecord,
  variants: VariantRecord[],
  replicas: string[],
  nodes: NodeView[],
  now: Date,
) {
  return {
    ...fileSummary(base, file),
    downloads: file.downloads,
    status: fileStatus(file, now),
    variants: variants.map((v) => ({
      name: v.name,
      state: v.state,
      size: v.blob?.size ?? null,
      mime: v.mime,
      url: v.state === 'ready' ? variantUrl(base, file.id, v.name) : null,
      ...(v.reason !== null ? { reason: v.reason } : {}),
    })),
    replicas: replicas.map((id) => {
      const node = nodes.find((n) => n.id === id)
      return { node_id: id, zone: node?.zone ?? null, state: node?.state ?? 'unknown' }
    }),
  }
}

/**
 * GET /api/files/:id of a password-protected file asked without its password:
 * that it exists, that it needs a password, whether it still serves and what
 * remains of it (what the share page and a client need to ask for the
 * password), and nothing of its content: no name, size, type, checksum,
 * variants or replicas (issue 7, bug 14). `created_at` and the download
 * count stay back too: they say when and how much the link was used.
 */
export function lockedFileView(base: string, file: FileRecord, now: Date) {
  const { download_url, share_url, info_url } = fileUrls(base, file.id)
  return {
    id: file.id,
    password_protected: true,
    status: fileStatus(file, now),
    expires_at: file.expiresAt.toISOString(),
    downloads_remaining: downloadsRemaining(file),
    download_url,
    info_url,
    share_url,
  }
}

function variantUrl(base: string, id: string, name: string): string {
  return name === 'thumbnail' ? `${base}/api/files/${id}/thumbnail` : `${base}/api/files/${id}/variants/${name}`
}

/** A node for /api/nodes; `usage`: what the metadata records on each node. */
export function nodeView(n: NodeView, usage: readonly NodeUsage[]) {
  const recorded = usage.find((u) => u.nodeId === n.id)
  return {
    id: n.id,
    url: n.url,
    zone: n.zone,
    state: n.state,
    failing: n.failing,
    draining: n.draining,
    // declared lost by the replication manager (its copies were made again elsewhere); cleared once reconciled
    lost_at: n.lostAt?.toISOString() ?? null,
    last_heartbeat: n.lastHeartbeat.toISOString(),
    capacity_bytes: n.capacityBytes,
    free_bytes: n.freeBytes,
    used_bytes: n.usedBytes,
    blob_count: n.blobCount,
    quarantined: n.quarantined,
    replicas: recorded?.replicas ?? 0,
    replica_bytes: recorded?.bytes ?? 0,
    version: n.version,
  }
}

/** A gateway in /api/cluster: `self` marks the one answering. */
export function gatewayView(g: GatewayRecord, deadAfterMs: number, selfId: string) {
  return {
    id: g.id,
    url: g.url,
    host: g.host,
    pid: g.pid,
    state: gatewayState(g, deadAfterMs),
    self: g.id === selfId,
    started_at: g.startedAt.toISOString(),
    last_heartbeat: g.lastSeen.toISOString(),
    heartbeat_age_ms: Math.round(g.heartbeatAgeMs),
    stopped_at: g.stoppedAt?.toISOString() ?? null,
    version: g.version,
  }
}
