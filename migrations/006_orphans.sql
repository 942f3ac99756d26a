-- 006_orphans: copies on storage nodes of blobs the metadata does not know,
-- which the replication manager holds for an operator instead of deleting
-- them (docs/replication.md, "Unknown blobs"): after a restore of the
-- metadata to an earlier time every blob uploaded since is such a copy.
CREATE TABLE orphans (
  node_id  text NOT NULL,
  blob_key text NOT NULL,
  size     bigint NOT NULL,
  -- held: waiting for an operator; kept: the operator keeps it (never
  -- deleted); released: the operator let it go, the manager deletes it
  state    text NOT NULL CHECK (state IN ('held', 'kept', 'released')),
  held_at  timestamptz NOT NULL,
  PRIMARY KEY (node_id, blob_key)
);
