-- Run-time limits of concurrency keys (see weft_store::LimitStore, docs/decisions/0009).
CREATE TABLE key_limits (
    key         TEXT    NOT NULL PRIMARY KEY,
    concurrency INTEGER NOT NULL CHECK (concurrency >= 1),
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
