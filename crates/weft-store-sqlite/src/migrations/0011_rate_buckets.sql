-- Rate buckets that the workers of a cluster share (see weft_store::LimitStore::rate_take,
-- docs/decisions/0009): the embedded store runs one process and never fills it; it exists
-- for schema parity and the conformance suite. And queue rate limits.
-- `tat` is the bucket's theoretical arrival time of its next start, in µs since the epoch.
CREATE TABLE rate_buckets (
    bucket TEXT    NOT NULL PRIMARY KEY,
    tat    INTEGER NOT NULL
) WITHOUT ROWID;
ALTER TABLE queues ADD COLUMN rate_limit INTEGER;
ALTER TABLE queues ADD COLUMN rate_per_ms INTEGER;
