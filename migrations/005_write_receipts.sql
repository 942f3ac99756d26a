-- 005_write_receipts: a receipt per write that must not happen twice (a
-- counted download, a batch of counts). The write and its receipt commit in
-- one statement, so a write whose answer was lost (a failover between the
-- commit and the reply) is replayed with the same id and finds its receipt
-- instead of counting again. A claim's receipt names its file: a refund
-- deletes it, so a replayed refund finds nothing to give back. The sweeper
-- forgets receipts after a day (forgetReceipts).
CREATE TABLE write_receipts (
  id         text PRIMARY KEY,
  file_id    text,
  created_at timestamptz NOT NULL
);
CREATE INDEX write_receipts_created_idx ON write_receipts (created_at);
