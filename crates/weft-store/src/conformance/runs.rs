//! Runs: creation (roots, timers, idempotency), reading one back, and listing.

use super::fixture::{Flow, T0, detail, flow, names, ready, start, succeed, task};
use crate::{DynStore, RunFilter};
use serde_json::json;
use weft_core::{RunState, TaskState};

const FANIN: &str = "
name: fanin
nodes:
  a: {type: noop, queue: fast, priority: 5}
  b: {type: noop}
  c: {type: noop, needs: [a, b]}
";

const LATER: &str = "
name: later
nodes:
  wait: {type: delay, params: {duration: 5s}}
  go: {type: noop}
  after: {type: noop, needs: [wait]}
";

const SINGLE: &str = "name: single\nnodes:\n  a: {type: noop}\n";
const OTHER: &str = "name: other\nnodes:\n  a: {type: noop}\n";

/// Roots are ready at once (with their queue and priority); the rest wait.
pub async fn create_reports_roots_ready(store: DynStore) {
    let f = flow(&store, FANIN).await;
    let (id, fx) = start(&store, f.run(json!({"order": 7}), T0)).await;

    let expected = vec![(id.clone(), "a".into(), 1), (id.clone(), "b".into(), 1)];
    assert_eq!(names(&fx), expected, "roots a and b are ready");
    let a = ready(&fx, &id, "a");
    assert_eq!((&*a.flow, a.version), ("fanin", f.version));
    assert_eq!((&*a.queue, a.priority), ("fast", 5));
    let b = ready(&fx, &id, "b");
    assert_eq!((&*b.queue, b.priority), ("default", 0));
    assert_eq!(fx.next_due, None, "no timer in this flow");
    assert!(fx.finished.is_empty() && fx.cancelled.is_empty());

    let d = detail(&store, &id).await;
    assert_eq!(d.run.flow, "fanin");
    assert_eq!(d.run.version, f.version);
    assert_eq!(d.run.state, RunState::Queued);
    assert_eq!(d.run.input, json!({"order": 7}));
    assert_eq!((d.run.created_at, d.run.finished_at), (T0, None));
    assert_eq!(d.run.error, None);
    assert_eq!(
        (d.run.parent_run.clone(), d.run.idempotency_key.clone()),
        (None, None)
    );
    assert_eq!(task(&d, "a").state, TaskState::Ready);
    assert_eq!(task(&d, "a").queue, "fast");
    assert_eq!(task(&d, "b").state, TaskState::Ready);
    assert_eq!(task(&d, "c").state, TaskState::Waiting);
}

/// A root `delay` starts as a timer due `duration` after creation (so the run is already
/// running), and fires on promote.
pub async fn create_schedules_root_delay(store: DynStore) {
    let f = flow(&store, LATER).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let due = T0 + 5_000;

    assert_eq!(
        names(&fx),
        vec![(id.clone(), "go".into(), 1)],
        "only go is ready"
    );
    assert_eq!(fx.next_due, Some(due), "the delay's timer is reported");
    let d = detail(&store, &id).await;
    assert_eq!(
        d.run.state,
        RunState::Running,
        "a run parked on a timer has started"
    );
    assert_eq!(task(&d, "wait").state, TaskState::Pending);
    assert_eq!(task(&d, "wait").scheduled_at, Some(due));
    assert_eq!(task(&d, "after").state, TaskState::Waiting);

    let early = store
        .task_promote_due(due - 1)
        .await
        .expect("promote early");
    assert!(early.ready.is_empty(), "not due yet: {:?}", names(&early));
    let fx = store.task_promote_due(due).await.expect("promote at due");
    assert_eq!(names(&fx), vec![(id.clone(), "after".into(), 1)]);
    let d = detail(&store, &id).await;
    assert_eq!(task(&d, "wait").state, TaskState::Succeeded);
    assert_eq!(task(&d, "after").state, TaskState::Ready);
}

/// A run created with a later start is `queued` with every root waiting as a timer: a
/// plain root until the start, a `delay` root until the start plus its duration. Nothing
/// is ready before the start; at the start the plain root is, and the run is unchanged
/// otherwise. A start time not after creation is no delay at all.
pub async fn create_with_start_time_waits_for_it(store: DynStore) {
    let f = flow(&store, LATER).await;
    let at = T0 + 60_000;
    let (id, fx) = start(
        &store,
        crate::NewRun {
            start_at: Some(at),
            ..f.run(json!(null), T0)
        },
    )
    .await;
    assert!(
        fx.ready.is_empty(),
        "nothing ready before the start: {:?}",
        names(&fx)
    );
    assert_eq!(fx.next_due, Some(at), "the start is the earliest timer");
    let d = detail(&store, &id).await;
    assert_eq!(
        d.run.state,
        RunState::Queued,
        "a delayed run has not started"
    );
    assert_eq!(task(&d, "go").state, TaskState::Pending);
    assert_eq!(task(&d, "go").scheduled_at, Some(at));
    assert_eq!(
        task(&d, "wait").scheduled_at,
        Some(at + 5_000),
        "the delay counts from the start"
    );
    assert_eq!(task(&d, "after").state, TaskState::Waiting);

    let early = store.task_promote_due(at - 1).await.expect("promote early");
    assert!(early.ready.is_empty(), "not due yet: {:?}", names(&early));
    let fx = store.task_promote_due(at).await.expect("promote at start");
    assert_eq!(names(&fx), vec![(id.clone(), "go".into(), 1)]);
    let fx = store
        .task_promote_due(at + 5_000)
        .await
        .expect("promote the delay");
    assert_eq!(names(&fx), vec![(id.clone(), "after".into(), 1)]);

    let (now, fx) = start(
        &store,
        crate::NewRun {
            start_at: Some(T0 - 1),
            ..f.run(json!(null), T0)
        },
    )
    .await;
    assert_eq!(
        names(&fx),
        vec![(now, "go".into(), 1)],
        "a past start is now"
    );
}

/// A repeated idempotency key returns the first run, creates nothing and readies nothing,
/// also within one batch.
pub async fn idempotency_key_returns_existing_run(store: DynStore) {
    let f = flow(&store, SINGLE).await;
    let mut first = f.run(json!(1), T0);
    first.idempotency_key = Some("k1".into());
    let (id, _) = start(&store, first).await;

    let mut dup = f.run(json!(2), T0 + 1);
    dup.idempotency_key = Some("k1".into());
    let dup_id = dup.id.clone();
    let (created, fx) = store.run_create(vec![dup]).await.expect("run_create dup");
    assert_eq!(created.len(), 1);
    assert_eq!(
        (created[0].id.as_str(), created[0].created),
        (id.as_str(), false)
    );
    assert!(
        fx.ready.is_empty(),
        "a duplicate readies nothing: {:?}",
        names(&fx)
    );
    assert!(store.run_get(&dup_id).await.expect("run_get").is_none());
    assert_eq!(
        detail(&store, &id).await.run.input,
        json!(1),
        "first run kept"
    );

    let (mut x, mut y) = (f.run(json!(3), T0 + 2), f.run(json!(4), T0 + 3));
    x.idempotency_key = Some("k2".into());
    y.idempotency_key = Some("k2".into());
    let x_id = x.id.clone();
    let (created, fx) = store
        .run_create(vec![x, y])
        .await
        .expect("run_create batch");
    let got: Vec<(&str, bool)> = created.iter().map(|c| (c.id.as_str(), c.created)).collect();
    assert_eq!(got, vec![(x_id.as_str(), true), (x_id.as_str(), false)]);
    assert_eq!(names(&fx), vec![(x_id.clone(), "a".into(), 1)]);
    let all = store
        .run_list(&RunFilter::default())
        .await
        .expect("run_list");
    assert_eq!(all.len(), 2, "two runs in total");
}

/// The same key on another flow is a different run.
pub async fn idempotency_key_is_scoped_to_flow(store: DynStore) {
    let (f, g) = (flow(&store, SINGLE).await, flow(&store, OTHER).await);
    let mut a = f.run(json!(null), T0);
    a.idempotency_key = Some("same".into());
    let mut b = g.run(json!(null), T0);
    b.idempotency_key = Some("same".into());
    let (a_id, _) = start(&store, a).await;
    let (b_id, fx) = start(&store, b).await;
    assert_ne!(a_id, b_id);
    assert_eq!(names(&fx), vec![(b_id.clone(), "a".into(), 1)]);
    let rec = detail(&store, &b_id).await.run;
    assert_eq!(
        (rec.flow.as_str(), rec.idempotency_key.as_deref()),
        ("other", Some("same"))
    );
}

/// Tasks come back in document order, not by name or by dependency.
pub async fn get_lists_tasks_in_flow_order(store: DynStore) {
    let yaml = "
name: ordered
nodes:
  bravo: {type: noop}
  alpha: {type: noop, needs: [charlie]}
  charlie: {type: noop}
";
    let f = flow(&store, yaml).await;
    let (id, _) = start(&store, f.run(json!(null), T0)).await;
    let d = detail(&store, &id).await;
    let order: Vec<&str> = d.tasks.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(order, vec!["bravo", "alpha", "charlie"]);
}

/// An unknown id reads as nothing, not an error.
pub async fn get_missing_is_none(store: DynStore) {
    let missing = uuid::Uuid::now_v7().to_string();
    assert!(store.run_get(&missing).await.expect("run_get").is_none());
    let filter = RunFilter {
        flow: Some("nope".into()),
        ..RunFilter::default()
    };
    assert!(store.run_list(&filter).await.expect("run_list").is_empty());
}

/// Creates `n` single-node runs of `flow` one after another; ids newest first.
async fn runs_of(store: &DynStore, f: &Flow, n: usize, at: i64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(start(store, f.run(json!(i), at + i as i64)).await.0);
    }
    ids.sort();
    ids.reverse();
    ids
}

async fn list(store: &DynStore, filter: RunFilter) -> Vec<String> {
    let runs = store.run_list(&filter).await.expect("run_list");
    runs.into_iter().map(|r| r.id).collect()
}

/// Flow and state filters combine; results are newest first.
pub async fn list_filters_by_flow_and_state(store: DynStore) {
    let (f, g) = (flow(&store, SINGLE).await, flow(&store, OTHER).await);
    let mut ones = runs_of(&store, &f, 2, T0).await;
    let (done, fx) = start(&store, f.run(json!("done"), T0 + 5)).await;
    let others = runs_of(&store, &g, 2, T0 + 10).await;
    let fx = succeed(&store, &ready(&fx, &done, "a"), T0 + 100, json!(null)).await;
    assert_eq!(fx.finished.len(), 1, "the single-node run finished");
    ones.push(done.clone());
    ones.sort();
    ones.reverse();

    let by = |flow: Option<&str>, state: Option<RunState>| RunFilter {
        flow: flow.map(str::to_string),
        state,
        ..RunFilter::default()
    };
    assert_eq!(list(&store, by(Some("single"), None)).await, ones);
    assert_eq!(list(&store, by(Some("other"), None)).await, others);
    assert_eq!(
        list(&store, by(None, Some(RunState::Succeeded))).await,
        vec![done.clone()]
    );
    let queued_ones: Vec<String> = ones.iter().filter(|i| **i != done).cloned().collect();
    assert_eq!(
        list(&store, by(Some("single"), Some(RunState::Queued))).await,
        queued_ones
    );
    assert!(
        list(&store, by(Some("other"), Some(RunState::Succeeded)))
            .await
            .is_empty()
    );
    let mut all = [ones, others].concat();
    all.sort();
    all.reverse();
    assert_eq!(
        list(&store, by(None, None)).await,
        all,
        "everything, newest first"
    );
}

/// Walking pages with the `before` cursor visits every run once, newest first.
pub async fn list_pages_newest_first_with_cursor(store: DynStore) {
    let f = flow(&store, SINGLE).await;
    let ids = runs_of(&store, &f, 5, T0).await;
    let mut seen = Vec::new();
    let mut before = None;
    for _ in 0..5 {
        let filter = RunFilter {
            before: before.clone(),
            limit: 2,
            ..RunFilter::default()
        };
        let page = list(&store, filter).await;
        assert!(page.len() <= 2, "limit 2 returned {}", page.len());
        let Some(last) = page.last().cloned() else {
            break;
        };
        seen.extend(page);
        before = Some(last);
    }
    assert_eq!(seen, ids, "pages cover every run once, newest first");
}

/// A zero limit means the default of 50.
pub async fn list_limit_defaults_to_fifty(store: DynStore) {
    let f = flow(&store, SINGLE).await;
    let runs = (0..51).map(|i| f.run(json!(i), T0 + i)).collect();
    let (created, _) = store.run_create(runs).await.expect("run_create");
    assert_eq!(created.len(), 51);
    let default = store
        .run_list(&RunFilter::default())
        .await
        .expect("run_list");
    assert_eq!(default.len(), 50);
    let filter = RunFilter {
        limit: 1000,
        ..RunFilter::default()
    };
    assert_eq!(store.run_list(&filter).await.expect("run_list").len(), 51);
}
