-- weft PostgreSQL store, schema version 1.
--
-- History tables (runs, tasks) are RANGE-partitioned by `id_ms` / `run_ms`: the creation
-- millisecond encoded in the run's UUID v7 id, so a lookup by run id alone can name its
-- partition. Daily partitions are created on demand by the driver; the DEFAULT partitions
-- catch anything else (ids that are not UUID v7 use key 0).

CREATE TABLE flows (
    name       text   NOT NULL,
    version    int    NOT NULL,
    spec       text   NOT NULL,
    hash       text   NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE runs (
    id          text COLLATE "C" NOT NULL,
    id_ms       bigint NOT NULL,
    flow        text   NOT NULL,
    version     int    NOT NULL,
    state       text   NOT NULL,
    input       text   NOT NULL,
    error       text,
    idem        text,
    parent_run  text COLLATE "C",
    parent_node text,
    active      int    NOT NULL,          -- tasks pending, ready, running or suspended
    dead        int    NOT NULL DEFAULT 0, -- tasks in the dead-letter queue
    created_at  bigint NOT NULL,
    finished_at bigint,
    PRIMARY KEY (id, id_ms)
) PARTITION BY RANGE (id_ms);
CREATE INDEX runs_flow ON runs (flow, id);
CREATE INDEX runs_state ON runs (state, id);
CREATE INDEX runs_parent ON runs (parent_run) WHERE parent_run IS NOT NULL;
CREATE TABLE runs_default PARTITION OF runs DEFAULT;

CREATE TABLE tasks (
    run_id       text COLLATE "C" NOT NULL,
    run_ms       bigint  NOT NULL,
    node         text    NOT NULL,
    idx          int     NOT NULL,
    state        text    NOT NULL,
    waiting      int     NOT NULL,         -- upstream nodes not yet finished
    ok           int     NOT NULL,         -- upstream nodes that succeeded
    doomed       boolean NOT NULL DEFAULT false, -- on a branch path not taken
    attempt      int     NOT NULL,
    queue        text    NOT NULL,
    priority     int     NOT NULL,
    scheduled_at bigint,
    output       text,
    error        text,
    attempts     jsonb,
    child_run    text COLLATE "C",
    finished_at  bigint,
    -- Reserved for multi-process claiming (FOR UPDATE SKIP LOCKED with leases); unused yet.
    lease_owner  text,
    lease_until  bigint,
    PRIMARY KEY (run_id, node, run_ms)
) PARTITION BY RANGE (run_ms);
CREATE INDEX tasks_due ON tasks (scheduled_at) WHERE state = 'pending';
CREATE INDEX tasks_dead ON tasks (finished_at) WHERE state = 'dead';
CREATE INDEX tasks_ready ON tasks (run_id) WHERE state = 'ready';
CREATE TABLE tasks_default PARTITION OF tasks DEFAULT;

-- Idempotency keys must be unique across partitions, so they live apart, unpartitioned.
CREATE TABLE run_idempotency (
    flow       text   NOT NULL,
    key        text   NOT NULL,
    run_id     text COLLATE "C" NOT NULL,
    run_ms     bigint NOT NULL,
    PRIMARY KEY (flow, key)
);
CREATE INDEX run_idempotency_ms ON run_idempotency (run_ms);

CREATE TABLE queues (
    name        text    NOT NULL PRIMARY KEY,
    concurrency int     NOT NULL,
    paused      boolean NOT NULL
);

-- API keys. Only a SHA-256 of each key's secret is kept (see docs/decisions/0004).
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    name        text,
    role        text   NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    hash        text   NOT NULL,
    created_at  bigint NOT NULL,
    revoked_at  bigint
);
