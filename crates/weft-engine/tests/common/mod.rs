//! Helpers the engine's integration tests share.

use serde_json::json;
use std::time::Duration;
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
