-- 001_init: the metadata schema (DESIGN §1): blobs, replicas, files, variants, nodes.
-- Applied by src/adapters/sql/migrate.ts inside one transaction, under an
-- advisory lock, on PostgreSQL and PGlite alike. Never edit an applied
-- migration: add the next number.

-- One stored object on the storage nodes. `pending` from beginBlob until the
-- file (or variant) that owns it is recorded; a pending row whose gateway died
-- is found by created_at and abandoned. size/sha256 are unknown while pending.
CREATE TABLE blobs (
  key        text PRIMARY KEY CHECK (key ~ '^[A-Za-z0-9_-]{22}$'),
  size       bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
  sha256     text,
  state      text NOT NULL CHECK (state IN ('pending', 'active')),
  created_at timestamptz NOT NULL,
  CHECK (state = 'pending' OR sha256 IS NOT NULL)
);
-- listStalePendingBlobs
CREATE INDEX blobs_pending_idx ON blobs (created_at) WHERE state = 'pending';

-- Which node holds a fsynced copy of which blob. Dropped with its blob row.
CREATE TABLE replicas (
  blob_key text NOT NULL REFERENCES blobs (key) ON DELETE CASCADE,
  node_id  text NOT NULL,
  PRIMARY KEY (blob_key, node_id)
);
-- what a lost or drained node held
CREATE INDEX replicas_node_idx ON replicas (node_id);

-- A shared link. Keeps its blob's size and sha256 so the row stays readable
-- after the sweeper purged the bytes and dropped the blob row (hence no
-- foreign key to blobs).
CREATE TABLE files (
  id                text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{22}$'),
  blob_key          text NOT NULL,
  name              text NOT NULL,
  mime              text NOT NULL,
  size              bigint NOT NULL CHECK (size >= 0),
  sha256            text NOT NULL,
  created_at        timestamptz NOT NULL,
  expires_at        timestamptz NOT NULL,
  max_downloads     integer CHECK (max_downloads IS NULL OR max_downloads >= 1),
  downloads         integer NOT NULL DEFAULT 0 CHECK (downloads >= 0),
  password_hash     text,
  delete_token_hash text NOT NULL,
  deleted_at        timestamptz,
  exhausted_at      timestamptz,
  purged_at         timestamptz,
  -- when the link dies or died: the first of deletion, exhaustion and expiry
  -- (LEAST ignores nulls). The sweeper's grace period counts from here.
  dies_at           timestamptz GENERATED ALWAYS AS (LEAST(deleted_at, exhausted_at, expires_at)) STORED
);
-- listPurgeable: dead, not purged, oldest death first
CREATE INDEX files_purge_idx ON files (dies_at) WHERE purged_at IS NULL;
-- blob -> owning file (shared-blob checks, under-replicated count)
CREATE INDEX files_blob_idx ON files (blob_key);

-- A derived image of a file. sha256/size are kept here for the same reason as
-- in files: the blob row goes away once purged.
CREATE TABLE variants (
  file_id    text NOT NULL REFERENCES files (id) ON DELETE CASCADE,
  name       text NOT NULL,
  state      text NOT NULL CHECK (state IN ('pending', 'ready', 'failed', 'skipped')),
  blob_key   text,
  size       bigint CHECK (size IS NULL OR size >= 0),
  sha256     text,
  mime       text,
  reason     text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (file_id, name),
  CHECK (state <> 'ready' OR (blob_key IS NOT NULL AND size IS NOT NULL AND sha256 IS NOT NULL))
);
CREATE INDEX variants_blob_idx ON variants (blob_key) WHERE blob_key IS NOT NULL;

-- under-replicated count: scans active blobs and probes replicas' primary key
CREATE INDEX blobs_active_idx ON blobs (key) WHERE state = 'active';

-- Storage nodes as they announced themselves; last_heartbeat drives up/suspect/down.
CREATE TABLE nodes (
  id             text PRIMARY KEY,
  url            text NOT NULL,
  zone           text NOT NULL,
  version        text NOT NULL,
  capacity_bytes bigint NOT NULL,
  free_bytes     bigint NOT NULL,
  used_bytes     bigint NOT NULL,
  blob_count     bigint NOT NULL,
  last_heartbeat timestamptz NOT NULL,
  first_seen     timestamptz NOT NULL,
  draining       boolean NOT NULL DEFAULT false
);
