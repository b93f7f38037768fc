-- Cron schedules. `spec` is the applied document (JSON); `paused` and `next_fire_at` are
-- the live state the fire step reads through schedules_due.
CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    next_fire_at INTEGER,
    last_fire_at INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0 AND next_fire_at IS NOT NULL;
