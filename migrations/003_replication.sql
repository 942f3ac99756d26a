-- 003_replication: what the replication manager (mayfly replicator) keeps.

-- A node silent past MAYFLY_NODE_DOWN_AFTER_SECONDS is declared lost: its
-- replica rows are dropped (so its blobs count as below their factor and are
-- copied elsewhere) and lost_at is set. When it heartbeats again it is
-- reconciled by inventory, and lost_at is cleared.
ALTER TABLE nodes ADD COLUMN lost_at timestamptz;
-- blobs the node found damaged and set aside (scrub or read); when it grows,
-- the manager reconciles the node and the lost copies are made again
ALTER TABLE nodes ADD COLUMN quarantined bigint NOT NULL DEFAULT 0;

-- Leader leases with fencing tokens, timed by the database clock. The token
-- grows with every new holder; the manager's writes check that their token is
-- still the live lease, so a paused old leader cannot act.
CREATE TABLE leases (
  name       text PRIMARY KEY,
  holder     text NOT NULL,
  token      bigint NOT NULL,
  expires_at timestamptz NOT NULL
);

-- Small documents shared between processes: the replication manager's
-- published status, an operator's rebalance request.
CREATE TABLE control (
  name       text PRIMARY KEY,
  value      text NOT NULL,
  -- grows with every write, so a reader can clear exactly what it read
  version    bigint NOT NULL,
  updated_at timestamptz NOT NULL
);
