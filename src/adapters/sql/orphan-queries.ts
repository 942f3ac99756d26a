// SQL of the orphan copies (migrations/006_orphans.sql): copies on nodes of
// blobs the metadata does not know, held for an operator. The manager's
// changes check its lease like every fenced change (replication-queries.ts).
import { fenceHolds } from './replication-queries.ts'

/** in: $1 node id. out: blob_key, size, state, held_at. */
export const ORPHANS_ON_NODE = `
SELECT blob_key, size, state, held_at FROM orphans WHERE node_id = $1::text`

/**
 * in: $1 node id, $2 keys, $3 sizes (same order), $4 lease name, $5 token.
 * out: fenced_ok. A copy recorded already keeps its state.
 */
export const HOLD_ORPHANS = `
WITH fence AS (SELECT ${fenceHolds('$4', '$5')} AS ok),
ins AS (
  INSERT INTO orphans (node_id, blob_key, size, state, held_at)
  SELECT $1::text, k, s, 'held', clock_timestamp() FROM unnest($2::text[], $3::bigint[]) AS c(k, s)
  WHERE (SELECT ok FROM fence)
  ON CONFLICT (node_id, blob_key) DO NOTHING
)
SELECT ok AS fenced_ok FROM fence`

/** in: $1 node id, $2 keys, $3 lease name, $4 token. out: fenced_ok. */
export const FORGET_ORPHANS = `
WITH fence AS (SELECT ${fenceHolds('$3', '$4')} AS ok),
del AS (DELETE FROM orphans WHERE node_id = $1::text AND blob_key = ANY($2::text[]) AND (SELECT ok FROM fence))
SELECT ok AS fenced_ok FROM fence`

/** in: none. out: node_id, state, copies, bytes. */
export const COUNT_ORPHANS = `
SELECT node_id, state, count(*)::int AS copies, COALESCE(sum(size), 0) AS bytes
FROM orphans GROUP BY node_id, state ORDER BY node_id, state`

/** in: $1 node id after, $2 key after (both '' from the start), $3 limit. out: orphan rows. */
export const LIST_ORPHANS = `
SELECT node_id, blob_key, size, state, held_at FROM orphans
WHERE (node_id COLLATE "C", blob_key COLLATE "C") > ($1::text COLLATE "C", $2::text COLLATE "C")
ORDER BY node_id COLLATE "C", blob_key COLLATE "C"
LIMIT $3::int`

/** in: $1 states from, $2 state to, $3 keys or null (every one). out: count. An operator's decision. */
export const DECIDE_ORPHANS = `
WITH upd AS (
  UPDATE orphans SET state = $2::text
  WHERE state = ANY($1::text[]) AND ($3::text[] IS NULL OR blob_key = ANY($3::text[]))
  RETURNING 1
)
SELECT count(*)::int AS count FROM upd`
