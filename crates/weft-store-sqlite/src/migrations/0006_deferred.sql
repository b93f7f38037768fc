-- Deferred tasks (see weft_store::Outcome::Deferred and docs/decisions/0008): a task whose
-- attempt was not made (its target's circuit breaker was open) waits `pending` until
-- `deferred_until` without using an attempt. The reason stays on the task until its next
-- attempt result; `deferrals` counts them over the task's life.
ALTER TABLE tasks ADD COLUMN deferred_reason TEXT;
ALTER TABLE tasks ADD COLUMN deferred_until INTEGER;
ALTER TABLE tasks ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0;
