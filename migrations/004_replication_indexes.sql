-- 004_replication_indexes: the replication manager walks blobs and a node's
-- replicas in byte order (COLLATE "C", the order of a storage node's
-- inventory). Indexes in that collation let those walks resume at their
-- cursor instead of sorting everything after it on every page.
CREATE INDEX blobs_active_key_c_idx ON blobs ((key COLLATE "C")) WHERE state = 'active';
CREATE INDEX replicas_node_key_c_idx ON replicas (node_id, (blob_key COLLATE "C"));
-- both replaced by the above
DROP INDEX blobs_active_idx;
DROP INDEX replicas_node_idx;
