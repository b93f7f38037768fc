-- weft PostgreSQL store, schema version 10: rate buckets that the workers of a cluster
-- share (see weft_store::LimitStore::rate_take, docs/decisions/0009), and queue rate limits.
-- `tat` is the bucket's theoretical arrival time of its next start, in µs since the epoch.
CREATE TABLE rate_buckets (
    bucket TEXT NOT NULL PRIMARY KEY,
    tat    INT8 NOT NULL
);
ALTER TABLE queues ADD COLUMN rate_limit INT4, ADD COLUMN rate_per_ms INT8;
