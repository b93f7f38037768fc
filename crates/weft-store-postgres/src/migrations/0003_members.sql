-- weft PostgreSQL store, schema version 3: cluster membership (see weft_store::MemberStore).
-- One row per process, replaced by each of its beats; `roles` and `queues` are JSON text (an
-- array of names, an array of {name, concurrency, running}).
CREATE TABLE members (
    node_id    text    NOT NULL PRIMARY KEY,
    hostname   text    NOT NULL,
    pid        bigint  NOT NULL,
    roles      text    NOT NULL,
    queues     text    NOT NULL,
    started_at bigint  NOT NULL,
    beat_at    bigint  NOT NULL,
    load       bigint  NOT NULL
);
