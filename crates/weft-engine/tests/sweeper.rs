//! The sweeper duty on a real SQLite store: a run left "running" by wrong counters
//! finishes, and a child run whose parent is gone is cancelled. The damage is made with a
//! second connection to the database file, as a bug or a hand edit would leave it.

mod common;

use common::until;
use serde_json::json;
use std::time::Duration;
use weft_core::RunState;
use weft_engine::{Engine, EngineConfig, StartRun};

struct Env {
    engine: Engine,
    /// A second connection to the store's database file.
    db: rusqlite::Connection,
    _engine: common::Sqlite,
}

async fn env() -> Env {
    let engine = common::sqlite(EngineConfig {
        sweep_every: Duration::from_millis(100),
        ..EngineConfig::default()
    })
    .await;
    let db = rusqlite::Connection::open(engine.dir.path().join("weft.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    Env {
        engine: engine.engine.clone(),
        db,
        _engine: engine,
    }
}

async fn state(e: &Engine, id: &str, want: RunState) {
    until(
        &format!("run {id} to be {want:?}"),
        Duration::from_secs(20),
        async || (e.run_get(id).await.unwrap().run.state == want).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn a_run_with_wrong_counters_is_finished_by_the_sweeper() {
    let env = env().await;
    let e = &env.engine;
    e.flow_apply("name: one\nnodes:\n  a: {type: noop, queue: held}\n")
        .await
        .unwrap();
    e.queue_set("held", None, Some(true)).await.unwrap();
    let id = common::start(e, "one").await;
    // The run believes three tasks are live; only `a` is.
    env.db
        .execute("UPDATE runs SET active = 3 WHERE id = ?1", [&id])
        .unwrap();
    e.queue_set("held", None, Some(false)).await.unwrap();
    state(e, &id, RunState::Succeeded).await;
    let run = e.run_get(&id).await.unwrap();
    assert_eq!(run.nodes[0].task.output, Some(json!(null)));
}

#[tokio::test]
async fn a_child_whose_parent_is_gone_is_cancelled() {
    let env = env().await;
    let e = &env.engine;
    e.flow_apply("name: child\nnodes:\n  c: {type: noop, queue: held}\n")
        .await
        .unwrap();
    e.flow_apply("name: parent\nnodes:\n  sub: {type: subflow, params: {flow: child}}\n")
        .await
        .unwrap();
    e.queue_set("held", None, Some(true)).await.unwrap();
    let parent = e
        .run_start(StartRun {
            flow: "parent".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let child = until("the child run", Duration::from_secs(20), async || {
        e.run_get(&parent).await.unwrap().nodes[0]
            .task
            .child_run
            .clone()
    })
    .await;
    env.db
        .execute("DELETE FROM runs WHERE id = ?1", [&parent])
        .unwrap();
    state(e, &child, RunState::Cancelled).await;
}
