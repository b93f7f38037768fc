-- Claims: worker processes sharing one database claim ready tasks (see weft_store::ClaimStore).
-- A claimed task stays 'ready' and carries its worker and lease deadline; every transition
-- into or out of 'ready' leaves both NULL, so only claimed ready tasks have a lease_owner.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_until INTEGER;

-- What task_claim reads: the unclaimed ready tasks of one queue, in claim order.
CREATE INDEX tasks_claim ON tasks (queue, priority DESC, run_id, idx)
    WHERE state = 'ready' AND lease_owner IS NULL;
-- A worker's leases (task_heartbeat) and the leases that ran out (task_reap).
CREATE INDEX tasks_lease_owner ON tasks (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX tasks_lease_until ON tasks (lease_until) WHERE lease_owner IS NOT NULL;

-- Leader leases for singleton duties (timers, reaping, retention): one row per duty.
CREATE TABLE leader_leases (
    duty   TEXT    NOT NULL PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
) WITHOUT ROWID;
