//! The WAL starts over as soon as a checkpoint has copied it all while the writer was idle,
//! not in whatever write comes next (which, under a burst of schedule ticks, would be the
//! burst's release paying for the truncation).

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_store::{FlowStore, NewRun, RunStore};
use weft_store_sqlite::{SqliteStore, db_path};

const FLOW: &str = "name: wal\nnodes:\n  a: {type: noop}\n";

#[tokio::test]
async fn a_copied_wal_is_truncated_without_another_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), Default::default()).expect("open");
    let spec = weft_core::parse_flow(FLOW).expect("parse");
    store.flow_put(&spec).await.expect("flow");
    let flow = Arc::new(weft_core::compile(&spec).expect("compile"));
    // About 10 MB of runs: well over the 4 MiB below which the WAL is left alone.
    let filler = "x".repeat(10_000);
    let mut ids = Vec::new();
    for batch in 0..10 {
        let runs = (0..100)
            .map(|i| NewRun {
                id: uuid::Uuid::now_v7().to_string(),
                flow: flow.clone(),
                version: 1,
                input: json!({ "n": batch * 100 + i, "filler": filler }),
                idempotency_key: None,
                parent: None,
                created_at: 0,
                start_at: None,
            })
            .collect::<Vec<_>>();
        ids.extend(runs.iter().map(|r| r.id.clone()));
        store.run_create(runs).await.expect("create");
    }
    let wal = {
        let mut p = db_path(dir.path()).into_os_string();
        p.push("-wal");
        std::path::PathBuf::from(p)
    };
    let size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let written = size();
    assert!(written > 8 << 20, "the WAL holds the runs: {written} bytes");
    // No write from here on: only the checkpointer (every second) and what it asks for.
    let deadline = Instant::now() + Duration::from_secs(20);
    while size() > 1 << 20 {
        assert!(
            Instant::now() < deadline,
            "the WAL was not started over: still {} bytes after 20 s",
            size()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What was written is all in the database file now.
    for id in [&ids[0], &ids[ids.len() / 2], &ids[ids.len() - 1]] {
        let run = store
            .run_get(id)
            .await
            .expect("get")
            .expect("the run is kept");
        assert_eq!(run.run.input["filler"].as_str().map(str::len), Some(10_000));
    }
}
