-- weft embedded store, schema version 1.
CREATE TABLE IF NOT EXISTS flows (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    spec       TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS runs (
    id          TEXT    NOT NULL PRIMARY KEY,
    flow        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    input       TEXT    NOT NULL,
    error       TEXT,
    idem        TEXT,
    parent_run  TEXT,
    parent_node TEXT,
    active      INTEGER NOT NULL,   -- tasks pending, ready, running or suspended
    dead        INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS runs_idem ON runs (flow, idem) WHERE idem IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_flow ON runs (flow, id);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state, id);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run) WHERE parent_run IS NOT NULL;

CREATE TABLE IF NOT EXISTS tasks (
    run_id       TEXT    NOT NULL,
    node         TEXT    NOT NULL,
    idx          INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    waiting      INTEGER NOT NULL,  -- upstream nodes not yet finished
    ok           INTEGER NOT NULL,  -- upstream nodes that succeeded
    doomed       INTEGER NOT NULL DEFAULT 0, -- on a branch path not taken
    attempt      INTEGER NOT NULL,
    queue        TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    scheduled_at INTEGER,
    output       TEXT,
    error        TEXT,
    attempts     TEXT,
    child_run    TEXT,
    finished_at  INTEGER,
    PRIMARY KEY (run_id, node)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (scheduled_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS tasks_dead ON tasks (finished_at) WHERE state = 'dead';

CREATE TABLE IF NOT EXISTS queues (
    name        TEXT    NOT NULL PRIMARY KEY,
    concurrency INTEGER NOT NULL,
    paused      INTEGER NOT NULL
);
