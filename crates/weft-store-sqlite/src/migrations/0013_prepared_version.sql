-- The flow version a prepared tick's run was created with, kept beside `prepared_run` so
-- releasing a burst of ticks reads only the schedules (no lookup of each held run). NULL
-- for a run prepared before this column: the fire step then drops it and creates the tick
-- afresh.
ALTER TABLE schedules ADD COLUMN prepared_version INTEGER;
