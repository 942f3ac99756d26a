// The SQL of the gateway registry (gateway-store.ts, migrations/007): the
// gateways' heartbeats and the tombstones of the uploads of dead ones. Every
// time that decides whether a gateway is alive is the database's clock.

/** in: $1 id, $2 url, $3 host, $4 pid, $5 version, $6 started_at. out: none. Stamped now(). */
export const BEAT = `
INSERT INTO gateways (id, url, host, pid, version, started_at, last_seen)
VALUES ($1::text, $2::text, $3::text, $4::int, $5::text, $6::timestamptz, now())
ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, last_seen = now(), stopped_at = NULL`

/** in: $1 id. out: none. */
export const LEAVE = `
UPDATE gateways SET stopped_at = now(), last_seen = now() WHERE id = $1::text`

/** in: none. out: the rows heard from within the hour, with heartbeat_age_ms by the database's clock. */
export const LIST = `
SELECT id, url, host, pid, version, started_at, last_seen, stopped_at,
  (extract(epoch FROM now() - last_seen) * 1000)::float8 AS heartbeat_age_ms
FROM gateways
WHERE last_seen > now() - interval '1 hour'
ORDER BY started_at DESC, id`

/**
 * in: $1 silent ms, $2 begun before (timestamptz), $3 limit. out: key.
 * Pending uploads whose gateway stopped, or stayed silent $1 ms while
 * another gateway beat (so a database outage that silences every gateway
 * at once abandons nothing), or that began before $2, become tombstones.
 */
export const ABANDON_ORPHANED_UPLOADS = `
WITH freshest AS (SELECT max(last_seen) AS at FROM gateways WHERE stopped_at IS NULL),
orphaned AS (
  SELECT b.key FROM blobs b
  LEFT JOIN gateways g ON g.id = b.owner
  CROSS JOIN freshest f
  WHERE b.state = 'pending' AND b.owner IS NOT NULL AND (
    b.created_at < $2::timestamptz
    OR g.stopped_at IS NOT NULL
    OR (g.last_seen < now() - make_interval(secs => $1::float8 / 1000)
        AND g.last_seen < f.at - make_interval(secs => $1::float8 / 1000)))
  ORDER BY b.created_at, b.key
  LIMIT $3::int
)
UPDATE blobs SET state = 'abandoned', abandoned_at = now()
FROM orphaned WHERE blobs.key = orphaned.key AND blobs.state = 'pending'
RETURNING blobs.key`

/** in: $1 limit. out: key, oldest tombstone first. */
export const LIST_UNCLEARED = `
SELECT key FROM blobs WHERE state = 'abandoned' AND cleared_at IS NULL
ORDER BY abandoned_at, key LIMIT $1::int`

/** in: $1 key. out: none. */
export const MARK_CLEARED = `
UPDATE blobs SET cleared_at = now() WHERE key = $1::text AND state = 'abandoned'`

/** in: $1 before, $2 limit. out: one row per forgotten tombstone or gateway. */
export const FORGET = `
WITH tombstones AS (
  DELETE FROM blobs WHERE key IN (
    SELECT key FROM blobs WHERE state = 'abandoned' AND cleared_at < $1::timestamptz LIMIT $2::int)
  RETURNING key
), silent AS (
  DELETE FROM gateways WHERE last_seen < $1::timestamptz RETURNING id
)
SELECT key AS gone FROM tombstones UNION ALL SELECT id FROM silent`
