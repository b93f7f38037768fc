//! Helpers the engine's integration tests share.

use serde_json::json;
use std::time::{Duration, Instant};
use weft_core::RunState;
use weft_engine::{Engine, EngineConfig, StartRun};

/// Polls `f` every 20 ms until it gives a value; fails naming `what` after `limit`.
pub async fn until<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh, migrated PostgreSQL schema, dropped with the guard; each engine of a cluster
/// test connects its own store (its own pool) to it, as a separate process would.
#[allow(dead_code)]
pub async fn schema() -> weft_store_postgres::testing::SchemaGuard {
    weft_store_postgres::testing::fresh().await.1
}

/// A cluster process on its own pool over `guard`'s schema, with short leases and polls:
/// a worker and orchestrator (queues from `queues`, as its configuration would give), or
/// with `worker: false` a gateway that runs no attempts and no leader duties.
#[allow(dead_code)]
pub async fn cluster_process(
    guard: &weft_store_postgres::testing::SchemaGuard,
    name: &str,
    worker: bool,
    queues: std::collections::BTreeMap<String, u32>,
) -> Engine {
    let cluster = weft_engine::ClusterConfig {
        lease: Duration::from_millis(3000),
        leader_ttl: Duration::from_millis(1000),
        leader_retry: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        orchestrator: worker,
        ..weft_engine::ClusterConfig::new(name)
    };
    let config = EngineConfig {
        cluster: Some(cluster),
        run_workers: worker,
        queues,
        ..EngineConfig::default()
    };
    Engine::start(
        weft_store_postgres::testing::connect(&guard.schema).await,
        config,
    )
    .await
    .expect("engine starts")
}

/// How many of the runs `ids` have succeeded.
#[allow(dead_code)]
pub async fn succeeded(e: &Engine, ids: &[String]) -> usize {
    let mut n = 0;
    for id in ids {
        if e.run_get(id).await.unwrap().run.state == RunState::Succeeded {
            n += 1;
        }
    }
    n
}

/// Asserts that no `limit + 1` of the sorted `starts` fall within `per - slack`. The slack
/// covers the time between the limiter admitting an attempt and its request reaching the
/// target (task spawn, HTTP client), which varies by a few ms, more on a loaded machine.
#[allow(dead_code)]
pub fn assert_spaced(starts: &[Instant], limit: usize, per: Duration, slack: Duration) {
    for w in starts.windows(limit + 1) {
        let span = w[limit] - w[0];
        assert!(
            span >= per - slack,
            "{} starts within {span:?} (limit {limit} per {per:?})",
            limit + 1
        );
    }
}

/// Starts a run of `flow` with an empty input; its id.
#[allow(dead_code)]
pub async fn start(e: &Engine, flow: &str) -> String {
    e.run_start(StartRun {
        flow: flow.into(),
        input: json!({}),
        ..Default::default()
    })
    .await
    .expect("run starts")
    .id
}

/// An engine on a SQLite store in a temp dir, which lives as long as this.
#[allow(dead_code)]
pub struct Sqlite {
    /// The engine.
    pub engine: Engine,
    /// The store's directory.
    pub dir: tempfile::TempDir,
}

/// Starts an engine with `config` on a fresh SQLite store.
#[allow(dead_code)]
pub async fn sqlite(config: EngineConfig) -> Sqlite {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = weft_store_sqlite::SqliteStore::open(dir.path(), Default::default())
        .expect("open the store");
    let engine = Engine::start(store, config).await.expect("engine starts");
    Sqlite { engine, dir }
}
