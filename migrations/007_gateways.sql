-- 007_gateways: the gateways as the cluster sees them, and the uploads each
-- one is writing, so that the cluster (not the gateway itself) cleans up
-- after a gateway that died mid-upload (issue 10).
--
-- Every gateway process beats into `gateways` about once a second under an
-- id of its own, new at every start; `last_seen` is the database's clock.
-- A pending blob names the gateway writing it (`owner`). Once that gateway
-- has stopped, or stayed silent while another kept beating, the sweeper
-- turns its pending blobs into `abandoned` tombstones and removes their
-- bytes from every node (`cleared_at` once every node confirmed). A
-- tombstone refuses the file that a gateway which was only frozen would
-- record when it wakes (CREATE_FILE), so no link ever points at removed
-- bytes. Tombstones and gateways silent for a day are forgotten.
CREATE TABLE gateways (
  id         text PRIMARY KEY,
  url        text NOT NULL,
  host       text NOT NULL,
  pid        integer NOT NULL,
  version    text NOT NULL,
  started_at timestamptz NOT NULL,
  last_seen  timestamptz NOT NULL,
  stopped_at timestamptz
);

ALTER TABLE blobs ADD COLUMN owner text;
ALTER TABLE blobs ADD COLUMN abandoned_at timestamptz;
ALTER TABLE blobs ADD COLUMN cleared_at timestamptz;
ALTER TABLE blobs DROP CONSTRAINT blobs_state_check;
ALTER TABLE blobs ADD CONSTRAINT blobs_state_check CHECK (state IN ('pending', 'active', 'abandoned'));
ALTER TABLE blobs DROP CONSTRAINT blobs_check;
ALTER TABLE blobs ADD CONSTRAINT blobs_check CHECK (state <> 'active' OR sha256 IS NOT NULL);
-- the sweeper's scans of pending uploads by owner and of tombstones to clear or forget
CREATE INDEX blobs_owner_idx ON blobs (owner) WHERE state = 'pending';
CREATE INDEX blobs_abandoned_idx ON blobs (abandoned_at) WHERE state = 'abandoned';
