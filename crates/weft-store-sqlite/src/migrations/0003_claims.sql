-- Claims: worker processes sharing one database claim ready tasks (see weft_store::ClaimStore).
-- A claimed task stays 'ready' and carries its worker and lease deadline; every transition
-- into or out of 'ready' leaves both NULL, so only claimed ready tasks have a lease_owner.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_until INTEGER;

-- No index for task_claim: a SQLite database has one weft process (clusters run on
-- PostgreSQL), which keeps claims in memory and never calls it, and an index over every
-- ready task would cost each task two index writes on the embedded hot path.
-- A worker's leases (task_heartbeat) and the leases that ran out (task_reap).
CREATE INDEX tasks_lease_owner ON tasks (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX tasks_lease_until ON tasks (lease_until) WHERE lease_owner IS NOT NULL;

-- Leader leases for singleton duties (timers, reaping, retention): one row per duty.
CREATE TABLE leader_leases (
    duty   TEXT    NOT NULL PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
) WITHOUT ROWID;
