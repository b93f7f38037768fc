-- weft PostgreSQL store, schema version 2: claims of ready tasks by workers sharing the
-- database, and leader leases (see weft_store::ClaimStore).
--
-- A claimed task stays 'ready' with `lease_owner` and `lease_until` set (columns reserved by
-- version 1); every transition into or out of 'ready' leaves both NULL, so only claimed ready
-- tasks carry a lease.

-- What task_claim reads: the unclaimed ready tasks of one queue, in claim order (highest
-- priority, then oldest run, then flow order). Created on every partition, present and future.
CREATE INDEX tasks_claim ON tasks (queue, priority DESC, run_ms, run_id, idx)
    WHERE state = 'ready' AND lease_owner IS NULL;
-- A worker's leases (task_heartbeat) and the leases that ran out (task_reap).
CREATE INDEX tasks_lease_owner ON tasks (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX tasks_lease_until ON tasks (lease_until) WHERE lease_owner IS NOT NULL;

-- Leader leases for singleton duties (timers, reaping, retention): one row per duty.
CREATE TABLE leader_leases (
    duty   text   NOT NULL PRIMARY KEY,
    holder text   NOT NULL,
    until  bigint NOT NULL
);
