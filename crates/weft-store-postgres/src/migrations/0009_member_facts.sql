-- weft PostgreSQL store, schema version 9: what `weft validate` and operators check about
-- each cluster member: whether it serves every queue (no list configured), its connection
-- pool's size, whether it is draining, and the database's own clock when its last beat was
-- written (to compare with the member's).
ALTER TABLE members
    ADD COLUMN all_queues    boolean NOT NULL DEFAULT false,
    ADD COLUMN pool_size     bigint  NOT NULL DEFAULT 0,
    ADD COLUMN ready         boolean NOT NULL DEFAULT true,
    ADD COLUMN store_beat_at bigint;
