-- What `weft validate` and operators check about each cluster member: whether it serves
-- every queue (no list configured), its connection pool's size and whether it is draining.
-- (SQLite has no clock apart from the writing process, so no database beat time is kept.)
ALTER TABLE members ADD COLUMN all_queues INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN pool_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN ready INTEGER NOT NULL DEFAULT 1;
