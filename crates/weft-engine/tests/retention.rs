//! Retention as a duty of the engine: a process owning its store prunes on its own; in a
//! cluster only the leader prunes, at most once per interval, and a new leader carries on
//! where the old one stopped. Every wait polls with a deadline.

mod common;

use common::{start, until};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_core::RunState;
use weft_core::time::{Clock, Millis, SystemClock};
use weft_engine::{ClusterConfig, Engine, EngineConfig, Retention};
use weft_store::{DynStore, NewRun};
use weft_store_postgres::testing::{self, SchemaGuard};
use weft_store_sqlite::SqliteStore;

const DAY_MS: Millis = 86_400_000;

fn now_ms() -> Millis {
    SystemClock.now_ms()
}

async fn gone(store: &DynStore, id: &str) -> bool {
    store.run_get(id).await.expect("run_get").is_none()
}

/// Waits until every run of `ids` is gone from the store.
async fn all_gone(store: &DynStore, ids: &[String], what: &str, limit: Duration) {
    until(what, limit, async || {
        for id in ids {
            if !gone(store, id).await {
                return None;
            }
        }
        Some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sole_engine_removes_finished_runs_and_keeps_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = SqliteStore::open(dir.path(), Default::default()).unwrap();
    let config = EngineConfig {
        // Everything finished before now is old enough.
        retention: Some(Retention {
            keep: Duration::ZERO,
            every: Duration::from_secs(1),
        }),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store.clone(), config).await.unwrap();
    engine
        .flow_apply("name: quick\nnodes:\n  a: {type: noop}\n")
        .await
        .unwrap();
    engine
        .flow_apply("name: slow\nnodes:\n  wait: {type: delay, params: {duration: 1h}}\n")
        .await
        .unwrap();
    let live = start(&engine, "slow").await;
    let done = start(&engine, "quick").await;
    until(
        "the finished run to be pruned",
        Duration::from_secs(15),
        async || gone(&store, &done).await.then_some(()),
    )
    .await;
    let v = engine.run_get(&live).await.expect("the live run stays");
    assert_eq!(v.run.state, RunState::Running, "{v:?}");
    engine.shutdown(Duration::from_secs(5)).await;
}

/// Runs of `flow` created (by their ids) at `at`, already finished (cancelled).
async fn old_runs(store: &DynStore, yaml: &str, at: Millis, n: usize) -> Vec<String> {
    let spec = weft_core::parse_flow(yaml).unwrap();
    let compiled = Arc::new(weft_core::compile(&spec).unwrap());
    let (record, _) = store.flow_put(&spec).await.unwrap();
    let ms = at as u64;
    let runs: Vec<NewRun> = (0..n)
        .map(|i| {
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                (ms % 1000) as u32 * 1_000_000 + i as u32,
            );
            NewRun {
                id: uuid::Uuid::new_v7(ts).to_string(),
                flow: compiled.clone(),
                version: record.version,
                input: json!({}),
                idempotency_key: None,
                parent: None,
                created_at: at,
                start_at: None,
            }
        })
        .collect();
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    store.run_create(runs).await.unwrap();
    for id in &ids {
        store.run_cancel(id).await.unwrap();
    }
    ids
}

async fn orchestrator(guard: &SchemaGuard, name: &str, every: Duration) -> Engine {
    let cluster = ClusterConfig {
        leader_ttl: Duration::from_millis(1000),
        leader_retry: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..ClusterConfig::new(name)
    };
    let config = EngineConfig {
        run_workers: false,
        cluster: Some(cluster),
        retention: Some(Retention {
            keep: Duration::from_secs(86_400),
            every,
        }),
        ..EngineConfig::default()
    };
    Engine::start(testing::connect(&guard.schema).await, config)
        .await
        .expect("engine starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_prunes_once_per_interval_and_a_new_leader_carries_on() {
    let (pg, guard) = testing::fresh().await;
    let store: DynStore = pg;
    const FLOW: &str = "name: old\nnodes:\n  a: {type: noop}\n";
    let now = now_ms();
    // Days apart: a pass drops a day's partition and the next (made ahead of need), which
    // this test's store still believes exist.
    let first = old_runs(&store, FLOW, now - 10 * DAY_MS, 3).await;

    let every = Duration::from_secs(4);
    let o1 = orchestrator(&guard, "o1", every).await;
    let o2 = orchestrator(&guard, "o2", every).await;
    all_gone(
        &store,
        &first,
        "the old runs to be pruned",
        Duration::from_secs(15),
    )
    .await;
    let first_pass = Instant::now();
    let (leader, other) = if o1.is_leader() { (o1, o2) } else { (o2, o1) };
    let (holder, until_ms) = store
        .leader_get("retention", now_ms())
        .await
        .unwrap()
        .expect("the pass holds the retention lease");
    assert_eq!(holder, leader.node_id(), "the leader ran the pass");
    assert!(until_ms > now_ms() + 1_000, "the lease marks the interval");

    // The leader goes away; the other takes over at once (the lease is given up) but waits
    // for the interval the old leader's pass started before pruning again.
    leader.shutdown(Duration::from_secs(5)).await;
    let second = old_runs(&store, FLOW, now - 5 * DAY_MS, 3).await;
    until(
        "the other orchestrator to lead",
        Duration::from_secs(10),
        async || other.is_leader().then_some(()),
    )
    .await;
    all_gone(
        &store,
        &second,
        "the new leader's pass",
        Duration::from_secs(20),
    )
    .await;
    let between = first_pass.elapsed();
    assert!(
        between >= every - Duration::from_millis(1_000),
        "the second pass waited for the interval: {between:?}"
    );
    let (holder, _) = store
        .leader_get("retention", now_ms())
        .await
        .unwrap()
        .expect("held");
    assert_eq!(
        holder,
        other.node_id(),
        "the new leader ran the second pass"
    );
    other.shutdown(Duration::from_secs(5)).await;
}
