// Every SQL statement of the metadata store, one constant each, with its
// inputs ($n) and output. The same text runs on PostgreSQL and PGlite. Types
// are cast explicitly so that both drivers serialize parameters alike; counts
// are cast to int so that neither returns a bigint or a string.

const FILE_COLUMNS = `id, blob_key, name, mime, size, sha256, created_at, expires_at, max_downloads, downloads,
  password_hash, delete_token_hash, deleted_at, exhausted_at, purged_at`

// ---- blobs ---------------------------------------------------------------

/** in: $1 key, $2 now, $3 owner (a gateway id, or null). out: none. A pending row; an existing row (in any state) is left alone. */
export const BEGIN_BLOB = `
INSERT INTO blobs (key, state, created_at, owner) VALUES ($1::text, 'pending', $2::timestamptz, $3::text)
ON CONFLICT (key) DO NOTHING`

/** in: $1 key. out: none. Only a pending row goes; an active blob belongs to a file. */
export const ABANDON_BLOB = `
DELETE FROM blobs WHERE key = $1::text AND state = 'pending'`

/** in: $1 before, $2 limit. out: key, oldest first. Owned ones are the gateway registry's (ABANDON_ORPHANED_UPLOADS). */
export const LIST_STALE_PENDING_BLOBS = `
SELECT key FROM blobs
WHERE state = 'pending' AND owner IS NULL AND created_at < $1::timestamptz
ORDER BY created_at, key
LIMIT $2::int`

/**
 * in: $1 key, $2 size, $3 sha256, $4 created_at. out: none.
 * The blob becomes active: a pending row from beginBlob is completed, a missing one inserted.
 * created_at becomes the activation time (the replication manager leaves a
 * blob alone for a moment after it, while its upload records its last copy).
 */
export const ACTIVATE_BLOB = `
INSERT INTO blobs (key, size, sha256, state, created_at)
VALUES ($1::text, $2::bigint, $3::text, 'active', $4::timestamptz)
ON CONFLICT (key) DO UPDATE SET size = EXCLUDED.size, sha256 = EXCLUDED.sha256, state = 'active',
  created_at = EXCLUDED.created_at`

// ---- replicas ------------------------------------------------------------

/** in: $1 blob key, $2 node ids (text[]). out: none. Idempotent. */
export const ADD_REPLICAS = `
INSERT INTO replicas (blob_key, node_id)
SELECT $1::text, n FROM unnest($2::text[]) AS n
ON CONFLICT DO NOTHING`

/** in: $1 blob key, $2 node id. out: blob_exists (false: no such blob row, nothing added). */
export const ADD_REPLICA = `
WITH blob AS (SELECT key FROM blobs WHERE key = $1::text),
ins AS (
  INSERT INTO replicas (blob_key, node_id) SELECT key, $2::text FROM blob
  ON CONFLICT DO NOTHING
)
SELECT EXISTS (SELECT 1 FROM blob) AS blob_exists`

/** in: $1 blob key, $2 node id. out: none. */
export const REMOVE_REPLICA = `
DELETE FROM replicas WHERE blob_key = $1::text AND node_id = $2::text`

/** in: $1 blob key. out: node_id, sorted. */
export const LIST_REPLICAS = `
SELECT node_id FROM replicas WHERE blob_key = $1::text ORDER BY node_id`

// ---- files ---------------------------------------------------------------

/**
 * in: $1 id, $2 blob key, $3 name, $4 mime, $5 size, $6 sha256, $7 created_at,
 * $8 expires_at, $9 max_downloads, $10 password_hash, $11 delete_token_hash,
 * $12 replica node ids (text[]), $13 variant names, $14 variant states,
 * $15 variant reasons (text[], pairwise). out: the new file row.
 * ONE statement (one round trip, atomic by itself): the blob becomes active
 * (a pending row from beginBlob is completed), its replicas, the file and
 * its variant rows. A duplicate file id is a unique violation, so nothing of
 * the statement stays. Foreign keys are checked at its end, when the blob
 * row exists. An abandoned blob (a tombstone of a dead gateway's upload,
 * its bytes being removed) is left alone: no row comes back, nothing is written.
 */
export const CREATE_FILE = `
WITH blob AS (
  INSERT INTO blobs (key, size, sha256, state, created_at)
  VALUES ($2::text, $5::bigint, $6::text, 'active', $7::timestamptz)
  ON CONFLICT (key) DO UPDATE SET size = EXCLUDED.size, sha256 = EXCLUDED.sha256, state = 'active',
    created_at = EXCLUDED.created_at
  WHERE blobs.state <> 'abandoned'
  RETURNING key
), replica AS (
  INSERT INTO replicas (blob_key, node_id)
  SELECT blob.key, n FROM blob, unnest($12::text[]) AS n
  ON CONFLICT DO NOTHING
), file AS (
  INSERT INTO files (id, blob_key, name, mime, size, sha256, created_at, expires_at, max_downloads,
    password_hash, delete_token_hash)
  SELECT $1::text, blob.key, $3::text, $4::text, $5::bigint, $6::text, $7::timestamptz, $8::timestamptz,
    $9::int, $10::text, $11::text
  FROM blob
  RETURNING ${FILE_COLUMNS}
), variant AS (
  INSERT INTO variants (file_id, name, state, reason, updated_at)
  SELECT file.id, v.name, v.state, v.reason, $7::timestamptz
  FROM file, unnest($13::text[], $14::text[], $15::text[]) AS v (name, state, reason)
)
SELECT ${FILE_COLUMNS} FROM file`

/** in: $1 id. out: the file row or none. */
export const GET_FILE = `
SELECT ${FILE_COLUMNS} FROM files WHERE id = $1::text`

/**
 * in: $1 id, $2 now, $3 receipt id. out: the updated file row, or none when
 * the link is not alive (unknown, deleted, expired or at its limit) or the
 * receipt exists (this claim was applied already: see CLAIM_OUTCOME).
 * ONE statement, so concurrent claims on the same row serialize on its row
 * lock and each re-checks the limit against the committed count: exactly
 * max_downloads succeed. The claim that takes the last download sets
 * exhausted_at. Its receipt commits with it; a replay of the same claim
 * (its answer was lost) counts nothing: it sees the receipt, or, when the
 * first run was still in flight, fails on the receipt's key.
 */
export const CLAIM_DOWNLOAD = `
WITH claimed AS (
  UPDATE files SET
    downloads = downloads + 1,
    exhausted_at = CASE WHEN max_downloads IS NOT NULL AND downloads + 1 >= max_downloads
                        THEN $2::timestamptz ELSE exhausted_at END
  WHERE id = $1::text
    AND deleted_at IS NULL AND purged_at IS NULL
    AND expires_at > $2::timestamptz
    AND (max_downloads IS NULL OR downloads < max_downloads)
    AND NOT EXISTS (SELECT 1 FROM write_receipts WHERE id = $3::text)
  RETURNING ${FILE_COLUMNS}
), receipt AS (
  INSERT INTO write_receipts (id, file_id, created_at) SELECT $3::text, id, $2::timestamptz FROM claimed
)
SELECT ${FILE_COLUMNS} FROM claimed`

/** in: $1 id, $2 receipt id. out: the file row and whether the claim with that receipt was applied, or none. */
export const CLAIM_OUTCOME = `
SELECT ${FILE_COLUMNS}, EXISTS (SELECT 1 FROM write_receipts WHERE id = $2::text) AS claimed
FROM files WHERE id = $1::text`

/**
 * in: $1 id, $2 the claim's receipt id. out: none. Gives the claimed
 * download back, once: the receipt goes with it, so a replay finds nothing.
 * The link lives again if the refunded claim had exhausted it. Nothing once
 * the bytes are purged.
 */
export const REFUND_DOWNLOAD = `
WITH receipt AS (
  DELETE FROM write_receipts WHERE id = $2::text AND file_id = $1::text RETURNING file_id
)
UPDATE files SET downloads = downloads - 1, exhausted_at = NULL
FROM receipt
WHERE files.id = receipt.file_id AND downloads > 0 AND purged_at IS NULL`

/**
 * in: $1 ids (text[]), $2 counts (int[]), pairwise, $3 receipt id. out: none.
 * Adds downloads of links without a limit, counted in batches off the
 * download path. A replayed batch (its answer was lost) adds nothing: its
 * receipt is there, or is being written (the insert waits for it).
 */
export const ADD_DOWNLOADS = `
WITH receipt AS (
  INSERT INTO write_receipts (id, created_at) VALUES ($3::text, now())
  ON CONFLICT (id) DO NOTHING
  RETURNING id
)
UPDATE files SET downloads = files.downloads + c.n
FROM unnest($1::text[], $2::int[]) AS c(id, n), receipt
WHERE files.id = c.id AND files.max_downloads IS NULL`

/** in: $1 before, $2 limit. out: id of each receipt forgotten. */
export const FORGET_RECEIPTS = `
DELETE FROM write_receipts WHERE id IN (
  SELECT id FROM write_receipts WHERE created_at < $1::timestamptz ORDER BY created_at LIMIT $2::int
) RETURNING id`

/** in: $1 id, $2 now. out: id, or none when unknown. A second delete keeps the first time. */
export const DELETE_FILE = `
UPDATE files SET deleted_at = COALESCE(deleted_at, $2::timestamptz)
WHERE id = $1::text
RETURNING id`

// ---- variants ------------------------------------------------------------

/** in: $1 file id. out: id when the file exists and is not purged; locks its row against markPurged. */
export const LOCK_LIVE_FILE = `
SELECT id FROM files WHERE id = $1::text AND purged_at IS NULL FOR UPDATE`

/** in: $1 file id, $2 name, $3 state, $4 blob_key, $5 size, $6 sha256, $7 mime, $8 reason. out: none. */
export const UPSERT_VARIANT = `
INSERT INTO variants (file_id, name, state, blob_key, size, sha256, mime, reason, updated_at)
VALUES ($1::text, $2::text, $3::text, $4::text, $5::bigint, $6::text, $7::text, $8::text, now())
ON CONFLICT (file_id, name) DO UPDATE SET
  state = EXCLUDED.state, blob_key = EXCLUDED.blob_key, size = EXCLUDED.size, sha256 = EXCLUDED.sha256,
  mime = EXCLUDED.mime, reason = EXCLUDED.reason, updated_at = now()`

/** in: $1 file id. out: variant rows by name. */
export const LIST_VARIANTS = `
SELECT file_id, name, state, blob_key, size, sha256, mime, reason
FROM variants WHERE file_id = $1::text ORDER BY name`

/**
 * in: $1 before, $2 limit. out: file_id, the longest-waiting first.
 * Files of live links (by the database clock) with a variant pending since before $1.
 */
export const LIST_STALE_PENDING_VARIANTS = `
SELECT v.file_id FROM variants v JOIN files f ON f.id = v.file_id
WHERE v.state = 'pending' AND v.updated_at < $1::timestamptz
  AND f.deleted_at IS NULL AND f.exhausted_at IS NULL AND f.purged_at IS NULL AND f.expires_at > now()
GROUP BY v.file_id
ORDER BY min(v.updated_at), v.file_id
LIMIT $2::int`

// ---- purge ---------------------------------------------------------------

/** in: $1 died_before, $2 limit. out: id, oldest death first. */
export const LIST_DEAD_FILES = `
SELECT id FROM files
WHERE purged_at IS NULL AND dies_at < $1::timestamptz
ORDER BY dies_at, id
LIMIT $2::int`

/**
 * in: $1 file ids (text[]). out: file_id, key, node_ids (text[], possibly empty).
 * The blobs of each file (its own and every variant's) that no other unpurged
 * file uses, each with the nodes that still hold it.
 */
export const LIST_PURGE_BLOBS = `
WITH keys AS (
  SELECT f.id AS file_id, f.blob_key AS key FROM files f WHERE f.id = ANY ($1::text[])
  UNION
  SELECT v.file_id, v.blob_key FROM variants v WHERE v.file_id = ANY ($1::text[]) AND v.blob_key IS NOT NULL
)
SELECT k.file_id, k.key,
  COALESCE(array_agg(r.node_id ORDER BY r.node_id) FILTER (WHERE r.node_id IS NOT NULL), '{}'::text[]) AS node_ids
FROM keys k
LEFT JOIN replicas r ON r.blob_key = k.key
WHERE NOT EXISTS (SELECT 1 FROM files o WHERE o.blob_key = k.key AND o.id <> k.file_id AND o.purged_at IS NULL)
  AND NOT EXISTS (
    SELECT 1 FROM variants ov JOIN files o ON o.id = ov.file_id
    WHERE ov.blob_key = k.key AND ov.file_id <> k.file_id AND o.purged_at IS NULL)
GROUP BY k.file_id, k.key
ORDER BY k.file_id, k.key`

/**
 * in: $1 file id, $2 now. out: purged (false: unknown, already purged, or a
 * blob of it still has a replica, so nothing changed).
 * Run after LOCK_LIVE_FILE in the same transaction. Sets purged_at and drops
 * the file's blob rows that no other unpurged file uses, only once none of
 * them has a replica left: a replica added since listPurgeable (a variant that
 * became ready late) keeps the file in the next listing instead of leaking.
 */
export const MARK_PURGED = `
WITH keys AS (
  SELECT f.blob_key AS key FROM files f WHERE f.id = $1::text
  UNION
  SELECT v.blob_key FROM variants v WHERE v.file_id = $1::text AND v.blob_key IS NOT NULL
),
own AS (
  SELECT k.key FROM keys k
  WHERE NOT EXISTS (SELECT 1 FROM files o WHERE o.blob_key = k.key AND o.id <> $1::text AND o.purged_at IS NULL)
    AND NOT EXISTS (
      SELECT 1 FROM variants ov JOIN files o ON o.id = ov.file_id
      WHERE ov.blob_key = k.key AND ov.file_id <> $1::text AND o.purged_at IS NULL)
),
clear AS (
  SELECT NOT EXISTS (SELECT 1 FROM replicas r JOIN own ON own.key = r.blob_key) AS ok
),
purged AS (
  UPDATE files SET purged_at = $2::timestamptz
  WHERE id = $1::text AND purged_at IS NULL AND (SELECT ok FROM clear)
  RETURNING id
),
dropped AS (
  DELETE FROM blobs WHERE key IN (SELECT key FROM own) AND EXISTS (SELECT 1 FROM purged)
)
SELECT EXISTS (SELECT 1 FROM purged) AS purged`

// ---- nodes ---------------------------------------------------------------

/**
 * in: $1 id, $2 url, $3 zone, $4 version, $5 capacity, $6 free, $7 used,
 *     $8 blob_count, $9 quarantined. out: none. The heartbeat is stamped with
 *     the database's clock, never the receiving gateway's: gateways' clocks
 *     differ, and the latest heartbeat must be the last one recorded, not the
 *     one from the fastest clock (issue 7, bug 7). draining and lost_at are
 *     the operator's and the manager's and stay.
 */
export const UPSERT_NODE = `
INSERT INTO nodes (id, url, zone, version, capacity_bytes, free_bytes, used_bytes, blob_count, quarantined,
  last_heartbeat, first_seen)
VALUES ($1::text, $2::text, $3::text, $4::text, $5::bigint, $6::bigint, $7::bigint, $8::bigint, $9::bigint,
  now(), now())
ON CONFLICT (id) DO UPDATE SET
  url = EXCLUDED.url, zone = EXCLUDED.zone, version = EXCLUDED.version,
  capacity_bytes = EXCLUDED.capacity_bytes, free_bytes = EXCLUDED.free_bytes,
  used_bytes = EXCLUDED.used_bytes, blob_count = EXCLUDED.blob_count, quarantined = EXCLUDED.quarantined,
  last_heartbeat = EXCLUDED.last_heartbeat`

/**
 * in: none. out: node rows by id, each with heartbeat_age_ms: how old its
 * last heartbeat is by the database's clock, which node states are judged on.
 */
export const LIST_NODES = `
SELECT id, url, zone, version, capacity_bytes, free_bytes, used_bytes, blob_count, quarantined, last_heartbeat,
  (extract(epoch FROM now() - last_heartbeat) * 1000)::float8 AS heartbeat_age_ms, draining, lost_at
FROM nodes ORDER BY id`
