// The replication manager's SQL (see replication-store.ts), one constant each
// with its inputs ($n) and output, like queries.ts. Keys are compared and
// sorted COLLATE "C" (byte order), the order of a storage node's inventory.

/** true when the blob `key` belongs to a file whose link is alive: its original or one of its variants. */
const liveOwner = (key: string) => `(
  EXISTS (SELECT 1 FROM files f WHERE f.blob_key = ${key} AND f.purged_at IS NULL AND f.dies_at > now())
  OR EXISTS (
    SELECT 1 FROM variants v JOIN files f ON f.id = v.file_id
    WHERE v.blob_key = ${key} AND f.purged_at IS NULL AND f.dies_at > now()))`

/** true while the lease $name/$token is the live one (fencing). */
export const fenceHolds = (name: string, token: string) => `
  EXISTS (SELECT 1 FROM leases WHERE name = ${name}::text AND token = ${token}::bigint AND expires_at > now())`

// ---- leases --------------------------------------------------------------

/**
 * in: $1 name, $2 holder, $3 ttl ms. out: token, or none when someone else
 * holds a live lease. The same holder (one per process) takes it again with
 * a new token: a replay after a lost answer supersedes the token it never
 * heard of rather than waiting out the ttl.
 *
 * The token is the database clock in milliseconds, or one more than the last
 * token when that is larger. A counter alone would go back with a metadata
 * store restored from a backup: its next holder would get a token lower than
 * the storage nodes have seen since, and every node would refuse it (409
 * fenced). The clock has moved on since any token the nodes saw was issued.
 */
export const ACQUIRE_LEASE = `
INSERT INTO leases AS l (name, holder, token, expires_at)
VALUES ($1::text, $2::text, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, now() + $3::int * interval '1 millisecond')
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, token = GREATEST(l.token + 1, EXCLUDED.token), expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= now() OR l.holder = EXCLUDED.holder
RETURNING token`

/** in: $1 name, $2 token, $3 ttl ms. out: token, or none when the lease lapsed (then it is lost). */
export const RENEW_LEASE = `
UPDATE leases SET expires_at = now() + $3::int * interval '1 millisecond'
WHERE name = $1::text AND token = $2::bigint AND expires_at > now()
RETURNING token`

/** in: $1 name, $2 token. out: none. The lease lapses now, so a standby may take it at once. */
export const RELEASE_LEASE = `
UPDATE leases SET expires_at = now() WHERE name = $1::text AND token = $2::bigint AND expires_at > now()`

// ---- finding work --------------------------------------------------------

/**
 * Live blobs with their replica counts: `kept` on nodes that are not
 * draining, `total` on any, and the `zones` the kept ones span.
 */
const REPLICA_COUNTS = `
SELECT b.key, b.size, b.sha256,
  COALESCE(array_agg(r.node_id ORDER BY r.node_id) FILTER (WHERE r.node_id IS NOT NULL), '{}'::text[]) AS node_ids,
  count(r.node_id) FILTER (WHERE n.draining IS NOT TRUE) AS kept,
  count(r.node_id) AS total,
  -- a replica on a node with no row counts as a zone of its own
  count(DISTINCT COALESCE(n.zone, '?' || r.node_id)) FILTER (WHERE r.node_id IS NOT NULL AND n.draining IS NOT TRUE) AS zones
FROM blobs b
LEFT JOIN replicas r ON r.blob_key = b.key
LEFT JOIN nodes n ON n.id = r.node_id
WHERE b.state = 'active' AND ${liveOwner('b.key')}`

/**
 * in: $1 factor, $2 after (key), $3 limit, $4 min age ms, $5 zones. out: key, size, sha256, node_ids.
 * Live blobs below their factor (counting nodes that are not draining), above
 * it, or spanning fewer than $5 zones, created at least $4 ms ago (a fresh
 * upload may still record its last copy).
 */
export const LIST_WORK = `
SELECT key, size, sha256, node_ids FROM (${REPLICA_COUNTS}
  AND b.key COLLATE "C" > $2::text AND b.created_at < now() - $4::int * interval '1 millisecond'
  GROUP BY b.key) c
WHERE kept < $1::int OR total > $1::int OR zones < $5::int
ORDER BY key COLLATE "C"
LIMIT $3::int`

/**
 * in: $1 factor, $2 zones. out: below, bytes (to copy to restore the factor),
 * above, narrow (at the factor but in fewer than $2 zones), none (no replica recorded).
 */
export const BACKLOG = `
SELECT count(*) FILTER (WHERE kept < $1::int)::int AS below,
  COALESCE(sum(($1::int - kept) * size) FILTER (WHERE kept < $1::int), 0)::bigint AS bytes,
  count(*) FILTER (WHERE total > $1::int)::int AS above,
  count(*) FILTER (WHERE kept >= $1::int AND zones < $2::int)::int AS narrow,
  count(*) FILTER (WHERE total = 0)::int AS none
FROM (${REPLICA_COUNTS} GROUP BY b.key) c`

/** in: none. out: node_id, replicas, bytes: what the metadata says each node holds. */
export const NODE_USAGE = `
SELECT r.node_id, count(*)::int AS replicas, COALESCE(sum(b.size), 0)::bigint AS bytes
FROM replicas r JOIN blobs b ON b.key = r.blob_key
GROUP BY r.node_id
ORDER BY r.node_id`

/**
 * in: $1 node id, $2 after (key), $3 limit. out: key, size, sha256, node_ids, live.
 * The blobs recorded on a node, each with all its replicas, in key order.
 */
export const LIST_NODE_BLOBS = `
SELECT b.key, b.size, b.sha256,
  (SELECT array_agg(o.node_id ORDER BY o.node_id) FROM replicas o WHERE o.blob_key = b.key) AS node_ids,
  (b.state = 'active' AND ${liveOwner('b.key')}) AS live
FROM replicas r JOIN blobs b ON b.key = r.blob_key
WHERE r.node_id = $1::text AND r.blob_key COLLATE "C" > $2::text
ORDER BY r.blob_key COLLATE "C"
LIMIT $3::int`

/**
 * in: $1 keys (text[]). out: key, state (null: no blob row), size, sha256, created_at,
 * node_ids, live (a live file owns it), owned (any file or variant names it).
 */
export const DESCRIBE_BLOBS = `
SELECT k.key, b.state, b.size, b.sha256, b.created_at,
  COALESCE((SELECT array_agg(r.node_id ORDER BY r.node_id) FROM replicas r WHERE r.blob_key = k.key), '{}'::text[]) AS node_ids,
  (b.state = 'active' AND ${liveOwner('k.key')}) IS TRUE AS live,
  (EXISTS (SELECT 1 FROM files f WHERE f.blob_key = k.key)
    OR EXISTS (SELECT 1 FROM variants v WHERE v.blob_key = k.key)) AS owned
FROM unnest($1::text[]) AS k(key)
LEFT JOIN blobs b ON b.key = k.key`

// ---- fenced changes --------------------------------------------------------

/**
 * in: $1 key, $2 node id, $3 lease name, $4 token. out: fenced_ok, live.
 * Records a copy the manager made, if the lease still holds and the blob is live.
 */
export const ADD_REPLICA_FENCED = `
WITH fence AS (SELECT ${fenceHolds('$3', '$4')} AS ok),
live AS (SELECT b.key FROM blobs b WHERE b.key = $1::text AND b.state = 'active' AND ${liveOwner('b.key')}),
ins AS (
  INSERT INTO replicas (blob_key, node_id) SELECT key, $2::text FROM live WHERE (SELECT ok FROM fence)
  ON CONFLICT DO NOTHING
)
SELECT (SELECT ok FROM fence) AS fenced_ok, EXISTS (SELECT 1 FROM live) AS live`

/** in: $1 key, $2 node id, $3 lease name, $4 token. out: fenced_ok. */
export const REMOVE_REPLICA_FENCED = `
WITH fence AS (SELECT ${fenceHolds('$3', '$4')} AS ok),
del AS (DELETE FROM replicas WHERE blob_key = $1::text AND node_id = $2::text AND (SELECT ok FROM fence))
SELECT ok AS fenced_ok FROM fence`

/**
 * in: $1 node id, $2 lease name, $3 token. out: fenced_ok, dropped.
 * The node is lost: its replica rows go, except a live blob's last one (the
 * only trace of where its bytes may still be), and lost_at is set. A dead
 * blob's last row goes too, so its file can be purged meanwhile; the node's
 * copy is deleted when it comes back and is reconciled.
 */
export const DECLARE_NODE_LOST = `
WITH fence AS (SELECT ${fenceHolds('$2', '$3')} AS ok),
dropped AS (
  DELETE FROM replicas r
  WHERE r.node_id = $1::text AND (SELECT ok FROM fence)
    AND (EXISTS (SELECT 1 FROM replicas o WHERE o.blob_key = r.blob_key AND o.node_id <> $1::text)
      OR NOT ${liveOwner('r.blob_key')})
  RETURNING 1
),
marked AS (
  -- a node that came back and died again before it was reconciled is lost anew
  UPDATE nodes SET lost_at = now()
  WHERE id = $1::text AND (lost_at IS NULL OR last_heartbeat > lost_at) AND (SELECT ok FROM fence)
)
SELECT (SELECT ok FROM fence) AS fenced_ok, (SELECT count(*) FROM dropped)::int AS dropped`

/** in: $1 node id, $2 lease name, $3 token. out: fenced_ok. A returning node was reconciled. */
export const MARK_NODE_RECONCILED = `
WITH fence AS (SELECT ${fenceHolds('$2', '$3')} AS ok),
upd AS (UPDATE nodes SET lost_at = NULL WHERE id = $1::text AND (SELECT ok FROM fence))
SELECT ok AS fenced_ok FROM fence`

// ---- operators -------------------------------------------------------------

/** in: $1 node id, $2 draining. out: id, or none when the node is unknown. */
export const SET_NODE_DRAINING = `
UPDATE nodes SET draining = $2::boolean WHERE id = $1::text RETURNING id`

/** in: $1 name. out: value, version, updated_at. */
export const READ_CONTROL = `
SELECT value, version, updated_at FROM control WHERE name = $1::text`

/** in: $1 name, $2 value (JSON text). out: none. */
export const WRITE_CONTROL = `
INSERT INTO control AS c (name, value, version, updated_at) VALUES ($1::text, $2::text, 1, clock_timestamp())
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, version = c.version + 1, updated_at = EXCLUDED.updated_at`

/** in: $1 name, $2 value (JSON text), $3 lease name, $4 token. out: fenced_ok. Written only while the lease holds. */
export const WRITE_CONTROL_FENCED = `
WITH fence AS (SELECT ${fenceHolds('$3', '$4')} AS ok),
upsert AS (
  INSERT INTO control AS c (name, value, version, updated_at)
  SELECT $1::text, $2::text, 1, clock_timestamp() WHERE (SELECT ok FROM fence)
  ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, version = c.version + 1, updated_at = EXCLUDED.updated_at
)
SELECT ok AS fenced_ok FROM fence`

/** in: $1 name, $2 version. out: none. Deletes the document only if nobody rewrote it since it was read. */
export const CLEAR_CONTROL = `
DELETE FROM control WHERE name = $1::text AND version = $2::bigint`
