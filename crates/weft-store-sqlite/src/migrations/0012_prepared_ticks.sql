-- Ticks prepared ahead (docs/decisions/0010): `prepared_run` is the run already created,
-- held, for the tick `next_fire_at`; the fire step releases it at the tick. The partial
-- index finds the schedules whose next tick still needs preparing.
ALTER TABLE schedules ADD COLUMN prepared_run TEXT;
CREATE INDEX schedules_unprepared ON schedules (next_fire_at)
    WHERE paused = 0 AND next_fire_at IS NOT NULL AND prepared_run IS NULL;
