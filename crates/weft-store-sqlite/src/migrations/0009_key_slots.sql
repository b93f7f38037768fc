-- The slots of concurrency keys that the workers of a cluster share (see
-- weft_store::LimitStore::key_acquire, docs/decisions/0009). The embedded store runs one
-- process and never fills it; it exists for schema parity and the conformance suite.
CREATE TABLE key_slots (
    key         TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    lease_until INTEGER NOT NULL,
    PRIMARY KEY (key, run_id, node)
) WITHOUT ROWID;
CREATE INDEX key_slots_holder ON key_slots (holder);
