//! Upgrading a database written by an older weft: the claims migration (version 3) adds the
//! lease columns to existing tasks, unclaimed, and the leader lease table; the members
//! migration (version 4) adds the empty cluster membership table.

use rusqlite::{Connection, params};
use weft_core::TaskState;
use weft_store::{ClaimStore, HealthStore, MemberStore, RunStore, Store};
use weft_store_sqlite::{SCHEMA_VERSION, SqliteStore, db_path};

/// The old run's id.
const RUN: &str = "0190a0b0-0000-7000-8000-000000000001";
const FLOW: &str = "name: old\nnodes:\n  a: {type: noop}\n  b: {type: noop, needs: [a]}\n";

/// A database at schema version 2 with one queued run whose task `a` is ready.
fn version_two(dir: &std::path::Path) -> String {
    let conn = Connection::open(db_path(dir)).expect("open");
    conn.execute_batch(include_str!("../src/migrations/0001_init.sql"))
        .expect("migration 1");
    conn.execute_batch(include_str!("../src/migrations/0002_api_keys.sql"))
        .expect("migration 2");
    conn.pragma_update(None, "user_version", 2)
        .expect("version");
    let spec = weft_core::parse_flow(FLOW).expect("parse");
    let text = serde_json::to_string(&spec).expect("spec");
    conn.execute(
        "INSERT INTO flows (name, version, spec, hash, created_at) VALUES ('old', 1, ?1, 'h', 0)",
        [text],
    )
    .expect("flow");
    let run = RUN.to_string();
    conn.execute(
        "INSERT INTO runs (id, flow, version, state, input, active, created_at)
         VALUES (?1, 'old', 1, 'queued', 'null', 1, 0)",
        [&run],
    )
    .expect("run");
    for (idx, node, state, waiting) in [(0, "a", "ready", 0), (1, "b", "waiting", 1)] {
        conn.execute(
            "INSERT INTO tasks (run_id, node, idx, state, waiting, ok, attempt, queue, priority)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, 1, 'default', 0)",
            params![run, node, idx, state, waiting],
        )
        .expect("task");
    }
    run
}

#[tokio::test]
async fn version_two_database_upgrades_with_its_ready_tasks_claimable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = version_two(dir.path());
    let store = SqliteStore::open(dir.path(), Default::default()).expect("open and migrate");
    let v = store.schema_version().await.expect("schema_version");
    assert_eq!((v.found, v.expected), (SCHEMA_VERSION, SCHEMA_VERSION));
    assert!(
        store
            .member_list(0, 1_000)
            .await
            .expect("member_list")
            .is_empty()
    );

    let claimed = store
        .task_claim("w1", "default", 10, 1_000)
        .await
        .expect("task_claim");
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(
        (&*claimed[0].run_id, &*claimed[0].node),
        (run.as_str(), "a")
    );
    assert_eq!((&*claimed[0].flow, claimed[0].version), ("old", 1));
    assert_eq!(
        store.task_heartbeat("w1", 2_000).await.expect("heartbeat"),
        vec![(run.clone(), "a".to_string())]
    );
    assert!(
        store
            .leader_acquire("timers", "p1", 0, 1_000)
            .await
            .expect("leader")
    );
    let d = store.run_get(&run).await.expect("run_get").expect("run");
    assert_eq!(d.tasks[0].state, TaskState::Ready);
    store.close();
    drop(store);

    // Opening again finds nothing to migrate.
    let again = SqliteStore::open(dir.path(), Default::default()).expect("reopen");
    assert_eq!(
        again.schema_version().await.expect("version").found,
        SCHEMA_VERSION
    );
}
