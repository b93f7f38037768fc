-- Cron schedules. `spec` is the applied document (JSON); `paused` and `next_fire_at` are
-- the live state the fire step reads (and locks) through schedules_due.
CREATE TABLE schedules (
    name         text PRIMARY KEY,
    spec         text NOT NULL,
    paused       boolean NOT NULL DEFAULT false,
    next_fire_at bigint,
    last_fire_at bigint,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL;
