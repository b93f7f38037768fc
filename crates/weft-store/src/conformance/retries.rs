//! Failures and timers: back-off, promotion of due tasks, dead-lettering, and `delay` nodes.
//! Retry policies use `jitter: 0` so back-offs are exact.

use super::fixture::{
    T0, assert_quiet, detail, fail, flow, names, ready, snapshot, start, state_of, succeed, task,
};
use crate::{AttemptRecord, DynStore, FinishedRun};
use serde_json::json;
use weft_core::{RunState, TaskState};

const RETRYING: &str = "
name: retrying
nodes:
  charge:
    type: fail
    retry: {max_attempts: 3, initial_delay: 1s, multiplier: 2.0, jitter: 0.0}
  after: {type: noop, needs: [charge]}
";

const TWICE: &str = "
name: twice
nodes:
  charge:
    type: fail
    retry: {max_attempts: 2, initial_delay: 1s, jitter: 0.0}
  after: {type: noop, needs: [charge]}
";

/// A retryable failure with attempts left makes the task pending for its back-off, records
/// the attempt, and reports the timer.
pub async fn retryable_failure_schedules_backoff(store: DynStore) {
    let f = flow(&store, RETRYING).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let fx = fail(&store, &ready(&fx, &id, "charge"), T0 + 100, "boom 1", true).await;
    assert!(fx.ready.is_empty() && fx.finished.is_empty(), "{fx:?}");
    assert_eq!(
        fx.next_due,
        Some(T0 + 100 + 1_000),
        "finished_at + initial_delay"
    );

    let d = detail(&store, &id).await;
    assert_eq!(d.run.state, RunState::Running);
    let charge = task(&d, "charge");
    assert_eq!(charge.state, TaskState::Pending);
    assert_eq!(charge.attempt, 2);
    assert_eq!(charge.scheduled_at, Some(T0 + 1_100));
    assert_eq!(charge.error.as_deref(), Some("boom 1"));
    let record = AttemptRecord {
        attempt: 1,
        started_at: T0 + 90,
        finished_at: T0 + 100,
        error: Some("boom 1".into()),
    };
    assert_eq!(charge.attempts, vec![record]);
    assert_eq!(task(&d, "after").state, TaskState::Waiting);
}

/// Promotion at the due time readies the next attempt; back-offs grow by the multiplier.
pub async fn promote_due_readies_next_attempt(store: DynStore) {
    let f = flow(&store, RETRYING).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    fail(&store, &ready(&fx, &id, "charge"), T0 + 100, "boom 1", true).await;

    let early = store
        .task_promote_due(T0 + 1_099)
        .await
        .expect("promote early");
    assert!(
        early.ready.is_empty(),
        "promoted before due: {:?}",
        names(&early)
    );
    assert_eq!(state_of(&store, &id, "charge").await, TaskState::Pending);
    let fx = store.task_promote_due(T0 + 1_100).await.expect("promote");
    assert_eq!(names(&fx), vec![(id.clone(), "charge".into(), 2)]);
    let d = detail(&store, &id).await;
    assert_eq!(task(&d, "charge").state, TaskState::Ready);
    assert_eq!(task(&d, "charge").scheduled_at, None);

    let fx = fail(
        &store,
        &ready(&fx, &id, "charge"),
        T0 + 2_000,
        "boom 2",
        true,
    )
    .await;
    assert_eq!(
        fx.next_due,
        Some(T0 + 2_000 + 2_000),
        "second back-off is doubled"
    );
    let fx = store.task_promote_due(T0 + 4_000).await.expect("promote");
    let third = ready(&fx, &id, "charge");
    assert_eq!(third.attempt, 3);
    let fx = succeed(&store, &third, T0 + 4_100, json!("paid")).await;
    assert_eq!(names(&fx), vec![(id.clone(), "after".into(), 1)]);
    let d = detail(&store, &id).await;
    let charge = task(&d, "charge");
    assert_eq!((charge.state, charge.attempt), (TaskState::Succeeded, 3));
    let tried: Vec<u32> = charge.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(
        tried,
        vec![1, 2],
        "failed attempts are recorded oldest first"
    );
}

/// Promotion reports the earliest timer still pending (the engine sleeps until it).
pub async fn promote_due_reports_next_timer(store: DynStore) {
    let f = flow(&store, RETRYING).await;
    let (r1, fx1) = start(&store, f.run(json!(null), T0)).await;
    let (r2, fx2) = start(&store, f.run(json!(null), T0)).await;
    fail(&store, &ready(&fx1, &r1, "charge"), T0, "x", true).await;
    fail(&store, &ready(&fx2, &r2, "charge"), T0 + 5_000, "x", true).await;

    let fx = store.task_promote_due(T0 + 1_000).await.expect("promote");
    assert_eq!(names(&fx), vec![(r1.clone(), "charge".into(), 2)]);
    assert_eq!(fx.next_due, Some(T0 + 6_000), "r2's back-off is next");
    let fx = store.task_promote_due(T0 + 1_500).await.expect("promote");
    assert!(fx.ready.is_empty());
    assert_eq!(fx.next_due, Some(T0 + 6_000));
    let fx = store.task_promote_due(T0 + 6_000).await.expect("promote");
    assert_eq!(names(&fx), vec![(r2.clone(), "charge".into(), 2)]);
    assert_eq!(fx.next_due, None, "no timer left");
}

/// Once a task has moved to its next attempt, results for the previous one are ignored, and
/// so are results for the next attempt before it is promoted.
pub async fn late_result_for_previous_attempt_is_ignored(store: DynStore) {
    let f = flow(&store, RETRYING).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let first = ready(&fx, &id, "charge");
    fail(&store, &first, T0 + 100, "boom", true).await;
    let before = snapshot(&store, &id).await;
    assert_quiet(
        &succeed(&store, &first, T0 + 200, json!(1)).await,
        "late attempt 1",
    );
    let mut early = first.clone();
    early.attempt = 2;
    assert_quiet(
        &succeed(&store, &early, T0 + 200, json!(2)).await,
        "attempt 2 while pending",
    );
    assert_eq!(snapshot(&store, &id).await, before);

    store.task_promote_due(T0 + 1_100).await.expect("promote");
    assert_quiet(
        &fail(&store, &first, T0 + 1_200, "late", true).await,
        "late attempt 1",
    );
    let d = detail(&store, &id).await;
    assert_eq!(
        (task(&d, "charge").state, task(&d, "charge").attempt),
        (TaskState::Ready, 2)
    );
}

/// A non-retryable failure kills the task at once; the run fails naming the node, and the
/// node's dependents stay waiting.
pub async fn non_retryable_failure_kills_task_and_fails_run(store: DynStore) {
    let f = flow(&store, RETRYING).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let fx = fail(
        &store,
        &ready(&fx, &id, "charge"),
        T0 + 100,
        "card declined",
        false,
    )
    .await;
    let expected = FinishedRun {
        id: id.clone(),
        flow: "retrying".into(),
        state: RunState::Failed,
        created_at: T0,
        finished_at: T0 + 100,
    };
    assert_eq!(fx.finished, vec![expected]);
    assert!(fx.ready.is_empty() && fx.next_due.is_none(), "{fx:?}");

    let d = detail(&store, &id).await;
    assert_eq!(
        (d.run.state, d.run.finished_at),
        (RunState::Failed, Some(T0 + 100))
    );
    let error = d.run.error.clone().unwrap_or_default();
    assert!(
        error.contains("charge") && error.contains("card declined"),
        "run error should name the node and its error: {error:?}"
    );
    let charge = task(&d, "charge");
    assert_eq!((charge.state, charge.attempt), (TaskState::Dead, 1));
    assert_eq!(charge.attempts.len(), 1);
    assert_eq!(charge.error.as_deref(), Some("card declined"));
    assert_eq!(task(&d, "after").state, TaskState::Waiting);
}

/// Failing the last allowed attempt kills the task even when the error is retryable.
pub async fn last_attempt_failure_kills_task(store: DynStore) {
    let f = flow(&store, TWICE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    fail(&store, &ready(&fx, &id, "charge"), T0 + 100, "one", true).await;
    let fx = store.task_promote_due(T0 + 1_100).await.expect("promote");
    let fx = fail(&store, &ready(&fx, &id, "charge"), T0 + 1_200, "two", true).await;
    assert_eq!(fx.next_due, None, "no retry after the last attempt");
    let finished: Vec<_> = fx
        .finished
        .iter()
        .map(|r| (r.id.as_str(), r.state))
        .collect();
    assert_eq!(finished, vec![(id.as_str(), RunState::Failed)]);

    let d = detail(&store, &id).await;
    let charge = task(&d, "charge");
    assert_eq!((charge.state, charge.attempt), (TaskState::Dead, 2));
    let errors: Vec<_> = charge
        .attempts
        .iter()
        .map(|a| (a.attempt, a.error.clone()))
        .collect();
    assert_eq!(
        errors,
        vec![(1, Some("one".into())), (2, Some("two".into()))]
    );
    assert_eq!(task(&d, "after").state, TaskState::Waiting);
}

/// A dead task fails its run only once nothing else in the run can still progress.
pub async fn run_fails_only_after_other_work_drains(store: DynStore) {
    let yaml = "name: parallel\nnodes:\n  charge: {type: fail}\n  side: {type: noop}\n";
    let f = flow(&store, yaml).await;
    let (id, fx0) = start(&store, f.run(json!(null), T0)).await;
    let fx = fail(&store, &ready(&fx0, &id, "charge"), T0 + 100, "boom", false).await;
    assert!(fx.finished.is_empty(), "side is still ready: {fx:?}");
    let d = detail(&store, &id).await;
    assert_eq!(task(&d, "charge").state, TaskState::Dead);
    assert!(!d.run.state.is_terminal(), "run is {}", d.run.state);

    let fx = succeed(&store, &ready(&fx0, &id, "side"), T0 + 200, json!(null)).await;
    let finished: Vec<_> = fx
        .finished
        .iter()
        .map(|r| (r.id.as_str(), r.state))
        .collect();
    assert_eq!(finished, vec![(id.as_str(), RunState::Failed)]);
    let error = detail(&store, &id).await.run.error.unwrap_or_default();
    assert!(
        error.contains("charge"),
        "run error should name charge: {error:?}"
    );
}

/// A `delay` after another node waits `duration` from that node's finish, then succeeds on
/// promotion and readies its successor.
pub async fn delay_waits_until_due(store: DynStore) {
    let yaml = "
name: delayed
nodes:
  a: {type: noop}
  wait: {type: delay, needs: [a], params: {duration: 10s}}
  b: {type: noop, needs: [wait]}
";
    let f = flow(&store, yaml).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let fx = succeed(&store, &ready(&fx, &id, "a"), T0 + 100, json!(null)).await;
    let due = T0 + 100 + 10_000;
    assert!(
        fx.ready.is_empty(),
        "a delay is not ready work: {:?}",
        names(&fx)
    );
    assert_eq!(fx.next_due, Some(due));
    let d = detail(&store, &id).await;
    assert_eq!(task(&d, "wait").state, TaskState::Pending);
    assert_eq!(task(&d, "wait").scheduled_at, Some(due));

    let early = store
        .task_promote_due(due - 1)
        .await
        .expect("promote early");
    assert!(early.ready.is_empty(), "fired early: {:?}", names(&early));
    assert_eq!(state_of(&store, &id, "wait").await, TaskState::Pending);
    let fx = store.task_promote_due(due).await.expect("promote");
    assert_eq!(names(&fx), vec![(id.clone(), "b".into(), 1)]);
    assert_eq!(state_of(&store, &id, "wait").await, TaskState::Succeeded);
    let fx = succeed(&store, &ready(&fx, &id, "b"), due + 10, json!(null)).await;
    assert_eq!(fx.finished.len(), 1, "the run finishes after the delay");
}
