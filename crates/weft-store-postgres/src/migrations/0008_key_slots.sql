-- weft PostgreSQL store, schema version 8: the slots of concurrency keys that the workers
-- of a cluster share (see weft_store::LimitStore::key_acquire, docs/decisions/0009).
CREATE TABLE key_slots (
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    node        TEXT NOT NULL,
    holder      TEXT NOT NULL,
    lease_until INT8 NOT NULL,
    PRIMARY KEY (key, run_id, node)
);
CREATE INDEX key_slots_holder ON key_slots (holder);
