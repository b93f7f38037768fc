-- weft embedded store, schema version 8: the sweeper looks for subflow tasks whose child
-- run is gone without reading every task.
CREATE INDEX IF NOT EXISTS tasks_suspended ON tasks (run_id) WHERE state = 'suspended';
