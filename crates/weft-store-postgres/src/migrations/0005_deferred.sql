-- weft PostgreSQL store: deferred tasks (see weft_store::Outcome::Deferred and
-- docs/decisions/0008). A task whose attempt was not made (its target's circuit breaker was
-- open) waits `pending` until `deferred_until` without using an attempt. The reason stays on
-- the task until its next attempt result; `deferrals` counts them over the task's life.
-- Added on the partitioned parent, so every partition, present and future, has them.
ALTER TABLE tasks ADD COLUMN deferred_reason text;
ALTER TABLE tasks ADD COLUMN deferred_until bigint;
ALTER TABLE tasks ADD COLUMN deferrals int NOT NULL DEFAULT 0;
