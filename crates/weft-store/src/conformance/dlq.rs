//! The dead-letter queue: dead tasks are listed with their attempts, and replaying one gives
//! it a fresh set of attempts and resumes its run.

use super::fixture::{
    T0, assert_refused, detail, fail, flow, names, ready, snapshot, start, succeed, task,
};
use crate::{AttemptRecord, DlqCursor, DlqFilter, DynStore, StoreError};
use serde_json::json;
use weft_core::{RunState, TaskState};

const BILLING: &str = "
name: billing
nodes:
  charge:
    type: fail
    retry: {max_attempts: 2, initial_delay: 1s, jitter: 0.0}
  after: {type: noop, needs: [charge]}
";

const ONCE: &str = "
name: once
nodes:
  charge: {type: fail}
  after: {type: noop, needs: [charge]}
";

const SHIPPING: &str = "
name: shipping
nodes:
  ship: {type: fail}
  charge: {type: fail}
";

/// Kills `charge` of a new [`BILLING`] run (two failed attempts); returns the run id.
async fn dead_billing(store: &DynStore) -> String {
    let f = flow(store, BILLING).await;
    let (id, fx) = start(store, f.run(json!(null), T0)).await;
    fail(store, &ready(&fx, &id, "charge"), T0 + 100, "one", true).await;
    let fx = store.task_promote_due(T0 + 1_100).await.expect("promote");
    fail(store, &ready(&fx, &id, "charge"), T0 + 1_200, "two", true).await;
    id
}

/// Kills every node of a new run of `yaml` at `at`; returns the run id.
async fn dead_run(store: &DynStore, yaml: &str, at: i64) -> String {
    let f = flow(store, yaml).await;
    let (id, fx) = start(store, f.run(json!(null), T0)).await;
    for t in fx.ready {
        fail(store, &t, at, "dead", false).await;
    }
    id
}

async fn dead(store: &DynStore, filter: DlqFilter) -> Vec<(String, String)> {
    let list = store.dlq_list(&filter).await.expect("dlq_list");
    list.into_iter().map(|d| (d.run_id, d.node)).collect()
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

/// A dead task is listed with its flow, last error, every attempt and when it died.
pub async fn dead_task_listed_with_attempts(store: DynStore) {
    assert!(
        store
            .dlq_list(&DlqFilter::default())
            .await
            .expect("dlq_list")
            .is_empty()
    );
    let id = dead_billing(&store).await;
    let list = store
        .dlq_list(&DlqFilter::default())
        .await
        .expect("dlq_list");
    assert_eq!(list.len(), 1, "{list:?}");
    let d = &list[0];
    assert_eq!(
        (d.run_id.as_str(), d.flow.as_str(), d.node.as_str()),
        (id.as_str(), "billing", "charge")
    );
    assert_eq!(d.error.as_deref(), Some("two"));
    assert_eq!(d.dead_at, T0 + 1_200);
    let attempts = vec![
        AttemptRecord {
            attempt: 1,
            started_at: T0 + 90,
            finished_at: T0 + 100,
            error: Some("one".into()),
        },
        AttemptRecord {
            attempt: 2,
            started_at: T0 + 1_190,
            finished_at: T0 + 1_200,
            error: Some("two".into()),
        },
    ];
    assert_eq!(d.attempts, attempts);
}

/// Flow and node filters apply, alone and together.
pub async fn list_filters_by_flow_and_node(store: DynStore) {
    let b = dead_run(&store, ONCE, T0 + 10).await;
    let s = dead_run(&store, SHIPPING, T0 + 20).await;
    let by = |flow: Option<&str>, node: Option<&str>| DlqFilter {
        flow: flow.map(str::to_string),
        node: node.map(str::to_string),
        ..DlqFilter::default()
    };
    let pair = |r: &str, n: &str| (r.to_string(), n.to_string());
    let all = sorted(vec![
        pair(&b, "charge"),
        pair(&s, "charge"),
        pair(&s, "ship"),
    ]);
    assert_eq!(sorted(dead(&store, by(None, None)).await), all);
    assert_eq!(
        dead(&store, by(Some("once"), None)).await,
        vec![pair(&b, "charge")]
    );
    let charges = sorted(vec![pair(&b, "charge"), pair(&s, "charge")]);
    assert_eq!(
        sorted(dead(&store, by(None, Some("charge"))).await),
        charges
    );
    assert_eq!(
        dead(&store, by(Some("shipping"), Some("ship"))).await,
        vec![pair(&s, "ship")]
    );
    assert!(dead(&store, by(Some("nope"), None)).await.is_empty());
}

/// Dead tasks come newest first, and the limit applies.
pub async fn list_newest_first(store: DynStore) {
    let middle = dead_run(&store, "name: m\nnodes:\n  x: {type: fail}\n", T0 + 200).await;
    let newest = dead_run(&store, "name: n\nnodes:\n  x: {type: fail}\n", T0 + 300).await;
    let oldest = dead_run(&store, "name: o\nnodes:\n  x: {type: fail}\n", T0 + 100).await;
    let runs = |v: Vec<(String, String)>| v.into_iter().map(|(r, _)| r).collect::<Vec<_>>();
    let all = runs(dead(&store, DlqFilter::default()).await);
    assert_eq!(all, vec![newest.clone(), middle.clone(), oldest]);
    let top = DlqFilter {
        limit: 2,
        ..DlqFilter::default()
    };
    assert_eq!(runs(dead(&store, top).await), vec![newest, middle]);
}

/// Kills every node of a new run of `yaml` at `at` with `error`; returns the run id.
async fn dead_with(store: &DynStore, yaml: &str, at: i64, error: &str) -> String {
    let f = flow(store, yaml).await;
    let (id, fx) = start(store, f.run(json!(null), T0)).await;
    for t in fx.ready {
        fail(store, &t, at, error, false).await;
    }
    id
}

/// The error-text filter matches a substring regardless of ASCII case; the time bounds
/// take dead times at or after `dead_after` and strictly before `dead_before`; the count
/// agrees with the list.
pub async fn list_filters_by_error_text_and_time(store: DynStore) {
    let one = "name: one\nnodes:\n  x: {type: fail}\n";
    let two = "name: two\nnodes:\n  x: {type: fail}\n";
    let three = "name: three\nnodes:\n  x: {type: fail}\n";
    let timeout = dead_with(&store, one, T0 + 100, "upstream Timed Out after 30s").await;
    let refused = dead_with(&store, two, T0 + 200, "connection refused").await;
    let late = dead_with(&store, three, T0 + 300, "TIMED OUT again").await;
    let pair = |r: &str| (r.to_string(), "x".to_string());
    let text = |t: &str| DlqFilter {
        error_contains: Some(t.into()),
        ..DlqFilter::default()
    };
    assert_eq!(
        dead(&store, text("timed out")).await,
        vec![pair(&late), pair(&timeout)]
    );
    assert_eq!(dead(&store, text("REFUSED")).await, vec![pair(&refused)]);
    assert!(dead(&store, text("disk full")).await.is_empty());
    let window = DlqFilter {
        dead_after: Some(T0 + 200),
        dead_before: Some(T0 + 300),
        ..DlqFilter::default()
    };
    assert_eq!(dead(&store, window.clone()).await, vec![pair(&refused)]);
    let both = DlqFilter {
        dead_after: Some(T0 + 150),
        ..text("out")
    };
    assert_eq!(dead(&store, both.clone()).await, vec![pair(&late)]);
    for (filter, n) in [
        (text("timed out"), 2),
        (window, 1),
        (both, 1),
        (DlqFilter::default(), 3),
    ] {
        assert_eq!(
            store.dlq_count(&filter).await.expect("dlq_count"),
            n,
            "{filter:?}"
        );
    }
}

/// Paging with the cursor visits every dead task once, in list order, even when several
/// share a dead time; the count ignores the cursor.
pub async fn cursor_pages_through_every_dead_task_once(store: DynStore) {
    let mut expected = Vec::new();
    for (i, name) in ["p1", "p2", "p3", "p4"].iter().enumerate() {
        let yaml = format!("name: {name}\nnodes:\n  a: {{type: fail}}\n  b: {{type: fail}}\n");
        // Two runs share each dead time, and each run has two dead nodes.
        let at = T0 + 100 * (i as i64 / 2);
        expected.push(dead_with(&store, &yaml, at, "boom").await);
    }
    let all = store
        .dlq_list(&DlqFilter {
            limit: 1000,
            ..DlqFilter::default()
        })
        .await
        .expect("dlq_list");
    assert_eq!(all.len(), 8);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .dlq_list(&DlqFilter {
                limit: 3,
                after: after.clone(),
                ..DlqFilter::default()
            })
            .await
            .expect("dlq_list page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(DlqCursor::after(last));
        assert_eq!(
            DlqCursor::decode(&after.as_ref().unwrap().encode()),
            after,
            "the cursor token round-trips"
        );
        seen.extend(page.into_iter().map(|d| (d.run_id, d.node)));
    }
    let listed: Vec<_> = all.into_iter().map(|d| (d.run_id, d.node)).collect();
    assert_eq!(seen, listed, "pages concatenate to the full list");
    let mut runs: Vec<_> = seen.iter().map(|(r, _)| r.clone()).collect();
    runs.sort();
    runs.dedup();
    expected.sort();
    assert_eq!(runs, expected);
    let filtered = DlqFilter {
        after,
        ..DlqFilter::default()
    };
    assert_eq!(store.dlq_count(&filtered).await.expect("dlq_count"), 8);
}

/// Replay makes the task ready at attempt 1 and the run running again, no longer failed.
pub async fn replay_readies_task_and_resumes_run(store: DynStore) {
    let id = dead_run(&store, ONCE, T0 + 100).await;
    assert_eq!(detail(&store, &id).await.run.state, RunState::Failed);
    let fx = store.dlq_replay(&id, "charge").await.expect("dlq_replay");
    assert_eq!(names(&fx), vec![(id.clone(), "charge".into(), 1)]);
    let t = ready(&fx, &id, "charge");
    assert_eq!((&*t.flow, &*t.queue), ("once", "default"));
    assert!(fx.finished.is_empty(), "{fx:?}");

    let d = detail(&store, &id).await;
    assert_eq!(d.run.state, RunState::Running);
    assert_eq!(
        (d.run.finished_at, d.run.error.clone()),
        (None, None),
        "no longer failed"
    );
    let charge = task(&d, "charge");
    assert_eq!((charge.state, charge.attempt), (TaskState::Ready, 1));
    assert!(
        store
            .dlq_list(&DlqFilter::default())
            .await
            .expect("dlq_list")
            .is_empty()
    );
}

/// A replayed task has its full retry policy again, and its success finishes the run.
pub async fn replayed_task_can_finish_run(store: DynStore) {
    let id = dead_billing(&store).await;
    let fx = store.dlq_replay(&id, "charge").await.expect("dlq_replay");
    let fx = fail(
        &store,
        &ready(&fx, &id, "charge"),
        T0 + 5_000,
        "three",
        true,
    )
    .await;
    assert_eq!(
        fx.next_due,
        Some(T0 + 6_000),
        "attempt 1 of the replay is retried"
    );
    assert!(fx.finished.is_empty(), "{fx:?}");
    let fx = store.task_promote_due(T0 + 6_000).await.expect("promote");
    let second = ready(&fx, &id, "charge");
    assert_eq!(second.attempt, 2);
    let fx = succeed(&store, &second, T0 + 6_100, json!("paid")).await;
    let fx = succeed(&store, &ready(&fx, &id, "after"), T0 + 6_200, json!(null)).await;
    let finished: Vec<_> = fx
        .finished
        .iter()
        .map(|r| (r.id.as_str(), r.state))
        .collect();
    assert_eq!(finished, vec![(id.as_str(), RunState::Succeeded)]);
    let d = detail(&store, &id).await;
    assert_eq!((d.run.state, d.run.error), (RunState::Succeeded, None));
}

/// Only dead tasks can be replayed: ready, succeeded, unknown nodes and runs are refused,
/// and the run is left as it was.
pub async fn replay_of_live_task_is_rejected(store: DynStore) {
    let f = flow(&store, ONCE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let before = snapshot(&store, &id).await;
    assert_refused(
        store.dlq_replay(&id, "charge").await,
        "replay of a ready task",
    );
    assert_refused(
        store.dlq_replay(&id, "after").await,
        "replay of a waiting task",
    );
    assert_refused(
        store.dlq_replay(&id, "nope").await,
        "replay of an unknown node",
    );
    assert_eq!(snapshot(&store, &id).await, before);

    succeed(&store, &ready(&fx, &id, "charge"), T0 + 10, json!(null)).await;
    assert_refused(
        store.dlq_replay(&id, "charge").await,
        "replay of a succeeded task",
    );
    let missing = uuid::Uuid::now_v7().to_string();
    assert_refused(
        store.dlq_replay(&missing, "charge").await,
        "replay in a missing run",
    );
}

/// A dead task of a cancelled run cannot be replayed.
pub async fn replay_on_cancelled_run_conflicts(store: DynStore) {
    let yaml = "name: parallel\nnodes:\n  charge: {type: fail}\n  side: {type: noop}\n";
    let f = flow(&store, yaml).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    fail(&store, &ready(&fx, &id, "charge"), T0 + 10, "boom", false).await;
    store
        .run_cancel(&id)
        .await
        .expect("cancel the still-running run");
    let before = snapshot(&store, &id).await;
    match store.dlq_replay(&id, "charge").await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("replay on a cancelled run: expected Conflict, got {other:?}"),
    }
    assert_eq!(snapshot(&store, &id).await, before);
}
