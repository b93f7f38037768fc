//! Partitions: created per day on demand, dropped whole by retention unless they hold a
//! live run. Also a large batch through the array statements.

mod common;

use serde_json::json;
use std::sync::Arc;
use weft_store::{NewRun, Outcome, RunStore, TaskResult, TaskStore};
use weft_store_postgres::DAY_MS;

const T0: i64 = 1_700_000_000_000; // 2023-11-14

/// A UUID v7 whose timestamp is `ms`.
fn id_at(ms: i64) -> String {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        (ms / 1000) as u64,
        ((ms % 1000) * 1_000_000) as u32,
    );
    uuid::Uuid::new_v7(ts).to_string()
}

fn run(flow: &Arc<weft_core::CompiledFlow>, id: String, key: Option<&str>) -> NewRun {
    NewRun {
        created_at: weft_store_postgres_ms(&id),
        id,
        flow: flow.clone(),
        version: 1,
        input: json!(null),
        idempotency_key: key.map(str::to_string),
        parent: None,
        start_at: None,
    }
}

fn weft_store_postgres_ms(id: &str) -> i64 {
    let u = uuid::Uuid::parse_str(id).unwrap();
    let (s, n) = u.get_timestamp().unwrap().to_unix();
    s as i64 * 1000 + n as i64 / 1_000_000
}

async fn tables(schema: &str) -> Vec<String> {
    let raw = common::raw(schema).await;
    raw.query(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
        &[&schema],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn retention_drops_only_old_partitions_without_live_runs() {
    let (store, guard) = common::fresh().await;
    let f = common::flow(&store, "name: single\nnodes:\n  a: {type: noop}\n").await;
    let day_a = T0 - T0.rem_euclid(DAY_MS);
    let day_b = day_a + 2 * DAY_MS;
    let old = id_at(day_a + 1_000);
    let live = id_at(day_b + 1_000);
    let recent = uuid::Uuid::now_v7().to_string();
    let runs = vec![
        run(&f, old.clone(), Some("old-key")),
        run(&f, live.clone(), None),
        run(&f, recent.clone(), None),
    ];
    store.run_create(runs).await.expect("run_create");
    store.run_cancel(&old).await.expect("cancel the old run");

    let before = tables(&guard.schema).await;
    for t in [
        "runs_p20231114",
        "tasks_p20231114",
        "runs_p20231116",
        "runs_default",
    ] {
        assert!(before.contains(&t.to_string()), "{t} in {before:?}");
    }

    // Days 14 and 15 (created ahead of need) end before the cutoff; 16 holds a live run.
    let cutoff = day_b + DAY_MS;
    let pruned = store
        .drop_partitions_older_than(cutoff)
        .await
        .expect("retention");
    assert_eq!(pruned.runs, 1, "the old cancelled run was counted");
    assert_eq!(
        pruned.partitions,
        [
            "runs_p20231114",
            "tasks_p20231114",
            "runs_p20231115",
            "tasks_p20231115"
        ]
        .map(String::from)
        .to_vec(),
        "empty and finished days go; the day with a queued run stays"
    );
    let after = tables(&guard.schema).await;
    assert!(!after.contains(&"runs_p20231114".to_string()));
    assert!(
        after.contains(&"runs_p20231116".to_string()),
        "live run kept"
    );
    assert!(after.contains(&"runs_default".to_string()));
    assert!(store.run_get(&old).await.unwrap().is_none());
    assert!(store.run_get(&live).await.unwrap().is_some());
    assert!(store.run_get(&recent).await.unwrap().is_some());

    // The old day can be written again (its partition is recreated), and the idempotency
    // key of the dropped run is free.
    let again = id_at(day_a + 5_000);
    let (created, _) = store
        .run_create(vec![run(&f, again.clone(), Some("old-key"))])
        .await
        .expect("run_create in the dropped day");
    assert!(created[0].created, "the dropped run's key is free again");
    assert!(store.run_get(&again).await.unwrap().is_some());
    assert!(
        tables(&guard.schema)
            .await
            .contains(&"runs_p20231114".to_string())
    );
}

#[tokio::test]
async fn large_batches_go_through_in_one_call() {
    let (store, _guard) = common::fresh().await;
    let f = common::flow(
        &store,
        "name: pair\nnodes:\n  a: {type: noop}\n  b: {type: noop, needs: [a]}\n",
    )
    .await;
    let runs: Vec<NewRun> = (0..500)
        .map(|_| run(&f, uuid::Uuid::now_v7().to_string(), None))
        .collect();
    let (created, fx) = store.run_create(runs).await.expect("run_create");
    assert_eq!(created.len(), 500);
    assert_eq!(fx.ready.len(), 500);
    let results = |fx: weft_store::Effects| -> Vec<TaskResult> {
        fx.ready
            .into_iter()
            .map(|task| TaskResult {
                task,
                started_at: T0,
                finished_at: T0 + 1,
                outcome: Outcome::Succeeded(json!({"ok": true})),
            })
            .collect()
    };
    let fx = store.task_complete(results(fx)).await.expect("complete a");
    assert_eq!(fx.ready.len(), 500, "every b is ready");
    assert!(fx.ready.iter().all(|t| &*t.node == "b"));
    let fx = store.task_complete(results(fx)).await.expect("complete b");
    assert_eq!(fx.finished.len(), 500, "every run finished");
    assert!(fx.ready.is_empty());
}
