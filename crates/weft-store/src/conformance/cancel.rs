//! Cancelling runs: what it marks, what it reports, what it cascades to, and that nothing
//! of a cancelled run moves afterwards.

use super::fixture::{
    T0, assert_quiet, by_run, detail, fail, finished, flow, names, ready, snapshot, start, succeed,
    task,
};
use crate::{DynStore, Effects, Outcome, StoreError};
use serde_json::json;
use weft_core::{RunState, TaskState};

const CANCELLABLE: &str = "
name: cancellable
nodes:
  a: {type: noop}
  b: {type: noop, needs: [a]}
  c: {type: noop, needs: [b]}
  wait: {type: delay, params: {duration: 1h}}
";

const RETRYING: &str = "
name: retrying
nodes:
  a:
    type: fail
    retry: {max_attempts: 3, initial_delay: 1s, jitter: 0.0}
";

const CHILD: &str = "name: child\nnodes:\n  c1: {type: noop}\n";
const PARENT: &str = "
name: parent
nodes:
  prep: {type: noop}
  sub: {type: subflow, needs: [prep], params: {flow: child}}
  after: {type: noop, needs: [sub]}
";

const HOUR: i64 = 3_600_000;

/// A parent whose `sub` task is suspended on a child whose `c1` is ready.
async fn parent_with_child(store: &DynStore) -> (String, String, Effects) {
    let child = flow(store, CHILD).await;
    let parent = flow(store, PARENT).await;
    let (pid, fx) = start(store, parent.run(json!(null), T0)).await;
    let fx = succeed(store, &ready(&fx, &pid, "prep"), T0 + 10, json!(null)).await;
    let sub = ready(&fx, &pid, "sub");
    let run = child.child_of(&pid, "sub", T0 + 20);
    let cid = run.id.clone();
    let fx =
        super::fixture::complete(store, &sub, T0 + 20, Outcome::StartChild(Box::new(run))).await;
    ready(&fx, &cid, "c1");
    (pid, cid, fx)
}

/// Cancel marks every unfinished task and the run cancelled, keeps finished tasks as they
/// were, and reports the run as cancelled and finished.
pub async fn cancel_marks_unfinished_tasks_and_run(store: DynStore) {
    let f = flow(&store, CANCELLABLE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    succeed(&store, &ready(&fx, &id, "a"), T0 + 10, json!("kept")).await;

    let fx = store.run_cancel(&id).await.expect("run_cancel");
    assert_eq!(fx.cancelled, vec![id.clone()]);
    assert_eq!(finished(&fx), vec![(id.clone(), RunState::Cancelled)]);
    assert!(fx.ready.is_empty(), "{:?}", names(&fx));

    let d = detail(&store, &id).await;
    assert_eq!(d.run.state, RunState::Cancelled);
    assert!(d.run.finished_at.is_some(), "a cancelled run has finished");
    let a = task(&d, "a");
    assert_eq!(
        (a.state, a.output.clone()),
        (TaskState::Succeeded, Some(json!("kept")))
    );
    for node in ["b", "c", "wait"] {
        assert_eq!(task(&d, node).state, TaskState::Cancelled, "task {node}");
    }
}

/// Cancelling a parent cancels its unfinished child runs too.
pub async fn cancel_cascades_to_child_runs(store: DynStore) {
    let (pid, cid, child_fx) = parent_with_child(&store).await;
    let fx = store.run_cancel(&pid).await.expect("run_cancel");
    let mut cancelled = fx.cancelled.clone();
    cancelled.sort();
    let mut expected = vec![pid.clone(), cid.clone()];
    expected.sort();
    assert_eq!(cancelled, expected, "parent and child are both reported");

    let p = detail(&store, &pid).await;
    assert_eq!(p.run.state, RunState::Cancelled);
    assert_eq!(task(&p, "sub").state, TaskState::Cancelled);
    let c = detail(&store, &cid).await;
    assert_eq!(c.run.state, RunState::Cancelled);
    assert_eq!(task(&c, "c1").state, TaskState::Cancelled);
    let late = succeed(&store, &ready(&child_fx, &cid, "c1"), T0 + 100, json!(1)).await;
    assert_quiet(&late, "child completion after cancel");
}

/// A run can be cancelled once; after that, and for finished runs, cancel conflicts.
pub async fn cancel_twice_conflicts(store: DynStore) {
    let f = flow(&store, CANCELLABLE).await;
    let (id, _) = start(&store, f.run(json!(null), T0)).await;
    store.run_cancel(&id).await.expect("first cancel");
    match store.run_cancel(&id).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("second cancel: expected Conflict, got {other:?}"),
    }

    let single = flow(&store, "name: single\nnodes:\n  a: {type: noop}\n").await;
    let (done, fx) = start(&store, single.run(json!(null), T0)).await;
    succeed(&store, &ready(&fx, &done, "a"), T0 + 10, json!(null)).await;
    match store.run_cancel(&done).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("cancel of a succeeded run: expected Conflict, got {other:?}"),
    }
    assert_eq!(detail(&store, &done).await.run.state, RunState::Succeeded);
}

/// Cancelling an unknown run is `NotFound`.
pub async fn cancel_missing_is_not_found(store: DynStore) {
    let missing = uuid::Uuid::now_v7().to_string();
    match store.run_cancel(&missing).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Results that arrive for a cancelled run change nothing and ready nothing.
pub async fn completions_after_cancel_are_ignored(store: DynStore) {
    let f = flow(&store, CANCELLABLE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let a = ready(&fx, &id, "a");
    store.run_cancel(&id).await.expect("run_cancel");
    let before = snapshot(&store, &id).await;
    assert_quiet(
        &succeed(&store, &a, T0 + 10, json!(1)).await,
        "success after cancel",
    );
    assert_quiet(
        &fail(&store, &a, T0 + 10, "x", true).await,
        "failure after cancel",
    );
    assert_eq!(snapshot(&store, &id).await, before);
    assert_eq!(detail(&store, &id).await.run.state, RunState::Cancelled);
}

/// Timers of a cancelled run (delays, back-offs) never fire, and recovery does not revive it.
pub async fn timers_after_cancel_are_ignored(store: DynStore) {
    let f = flow(&store, CANCELLABLE).await;
    let (delayed, _) = start(&store, f.run(json!(null), T0)).await;
    let r = flow(&store, RETRYING).await;
    let (retrying, fx) = start(&store, r.run(json!(null), T0)).await;
    fail(&store, &ready(&fx, &retrying, "a"), T0 + 10, "x", true).await;
    store.run_cancel(&delayed).await.expect("cancel delayed");
    store.run_cancel(&retrying).await.expect("cancel retrying");
    let before = (
        snapshot(&store, &delayed).await,
        snapshot(&store, &retrying).await,
    );

    let fx = store
        .task_promote_due(T0 + 2 * HOUR)
        .await
        .expect("promote");
    assert!(fx.ready.is_empty() && fx.finished.is_empty(), "{fx:?}");
    assert_eq!(fx.next_due, None, "cancelled timers are gone");
    let after = (
        snapshot(&store, &delayed).await,
        snapshot(&store, &retrying).await,
    );
    assert_eq!(after, before);
    let fx = store.task_recover().await.expect("task_recover");
    assert!(fx.ready.is_empty(), "recovered {:?}", names(&fx));
    assert_eq!(fx.next_due, None);
}

/// Cancelling a child run fails its parent's subflow task for good (a user's cancel is not
/// retried), so the parent run fails.
pub async fn cancelling_child_fails_parent_task(store: DynStore) {
    let (pid, cid, _) = parent_with_child(&store).await;
    let fx = store.run_cancel(&cid).await.expect("run_cancel child");
    assert_eq!(
        fx.cancelled,
        vec![cid.clone()],
        "only the child is cancelled"
    );
    let expected = by_run(vec![
        (cid.clone(), RunState::Cancelled),
        (pid.clone(), RunState::Failed),
    ]);
    assert_eq!(finished(&fx), expected);

    let p = detail(&store, &pid).await;
    assert_eq!(task(&p, "sub").state, TaskState::Dead);
    assert_eq!(task(&p, "after").state, TaskState::Waiting);
    let error = p.run.error.unwrap_or_default();
    assert!(
        error.contains("sub"),
        "parent error should name sub: {error:?}"
    );
}
