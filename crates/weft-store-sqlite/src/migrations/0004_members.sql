-- Cluster membership (see weft_store::MemberStore): one row per process, replaced by each of
-- its beats. `roles` and `queues` are JSON text (an array of names, an array of
-- {name, concurrency, running}).
CREATE TABLE members (
    node_id    TEXT    NOT NULL PRIMARY KEY,
    hostname   TEXT    NOT NULL,
    pid        INTEGER NOT NULL,
    roles      TEXT    NOT NULL,
    queues     TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    beat_at    INTEGER NOT NULL,
    load       INTEGER NOT NULL
) WITHOUT ROWID;
