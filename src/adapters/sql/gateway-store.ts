// GatewayRegistry over a SqlDb (PostgreSQL and PGlite alike): the gateways'
// heartbeats, and the uploads of gateways that died (gateway-queries.ts).
import type { GatewayRecord } from '../../core/gateway.ts'
import type { GatewayRegistry } from '../../ports.ts'
import * as q from './gateway-queries.ts'
import type { SqlDb } from './sql-db.ts'

const idempotent = { idempotent: true }

interface GatewayRow {
  id: string
  url: string
  host: string
  pid: number
  version: string
  started_at: Date
  last_seen: Date
  stopped_at: Date | null
  heartbeat_age_ms: number
}

const toGateway = (r: GatewayRow): GatewayRecord => ({
  id: r.id,
  url: r.url,
  host: r.host,
  pid: r.pid,
  version: r.version,
  startedAt: r.started_at,
  lastSeen: r.last_seen,
  stoppedAt: r.stopped_at,
  heartbeatAgeMs: Math.max(0, Number(r.heartbeat_age_ms)),
})

/** `reader` serves the listing (it only informs), never what decides a clean-up */
export function createSqlGatewayRegistry(db: SqlDb, reader: SqlDb = db): GatewayRegistry {
  return {
    async beat(g) {
      await db.query(q.BEAT, [g.id, g.url, g.host, g.pid, g.version, g.startedAt], idempotent)
    },
    async leave(id) {
      await db.query(q.LEAVE, [id], idempotent)
    },
    async list() {
      const rows = await reader.query<GatewayRow>(q.LIST, [], idempotent)
      return rows.map(toGateway)
    },
    async abandonOrphanedUploads(silentMs, before, limit) {
      const rows = await db.query<{ key: string }>(q.ABANDON_ORPHANED_UPLOADS, [silentMs, before, limit], idempotent)
      return rows.map((r) => r.key)
    },
    async listAbandonedUploads(limit) {
      const rows = await db.query<{ key: string }>(q.LIST_UNCLEARED, [limit], idempotent)
      return rows.map((r) => r.key)
    },
    async markCleared(key) {
      await db.query(q.MARK_CLEARED, [key], idempotent)
    },
    async forget(before, limit) {
      const rows = await db.query(q.FORGET, [before, limit], idempotent)
      return rows.length
    },
  }
}
