//! Deferred attempts ([`Outcome::Deferred`]): a task whose attempt was not made (its
//! target's circuit breaker was open) waits `pending` until a time, keeps its reason where
//! any process can read it, and runs the same attempt again without using up its retries
//! (docs/decisions/0008).

use super::fixture::{
    T0, complete, detail, fail, flow, names, ready, snapshot, start, succeed, task,
};
use crate::{Change, Deferral, DynStore, Effects, Outcome, ReadyTask};
use serde_json::json;
use weft_core::time::Millis;
use weft_core::{RunState, TaskState};

const TWICE: &str = "
name: deferring
nodes:
  call:
    type: fail
    retry: {max_attempts: 2, initial_delay: 1s, jitter: 0.0}
  after: {type: noop, needs: [call]}
";

const REASON: &str = "circuit open for host api.example.com:443";

async fn defer(store: &DynStore, t: &ReadyTask, at: Millis, until: Millis) -> Effects {
    let outcome = Outcome::Deferred {
        until,
        reason: REASON.into(),
    };
    complete(store, t, at, outcome).await
}

/// A deferred task is pending until `until` with its reason readable, holds the same
/// attempt, records no attempt and leaves the run running; the timer is reported.
pub async fn deferred_task_waits_with_its_reason(store: DynStore) {
    let f = flow(&store, TWICE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let fx = defer(&store, &ready(&fx, &id, "call"), T0 + 100, T0 + 5_000).await;
    assert!(fx.ready.is_empty() && fx.finished.is_empty(), "{fx:?}");
    assert_eq!(
        fx.next_due,
        Some(T0 + 5_000),
        "the deferral's end is a timer"
    );
    let change = fx.changes.iter().find_map(|c| match c {
        Change::Task(t) if t.node == "call" => Some(t),
        _ => None,
    });
    let change = change.expect("the deferral is reported as a task change");
    assert_eq!(change.state, TaskState::Pending);
    assert_eq!(change.error.as_deref(), Some(REASON));
    assert_eq!(change.next_attempt_at, Some(T0 + 5_000));

    let d = detail(&store, &id).await;
    assert_eq!(d.run.state, RunState::Running);
    let call = task(&d, "call");
    assert_eq!(call.state, TaskState::Pending);
    assert_eq!(call.attempt, 1, "a deferral does not use an attempt");
    assert!(call.attempts.is_empty(), "nothing was tried: {call:?}");
    assert_eq!(call.scheduled_at, Some(T0 + 5_000));
    assert_eq!(
        call.deferred,
        Some(Deferral {
            reason: REASON.into(),
            until: T0 + 5_000,
            count: 1
        })
    );
    let recovered = store.task_recover().await.expect("recover");
    assert!(recovered.ready.is_empty(), "{:?}", names(&recovered));
    assert_eq!(recovered.next_due, Some(T0 + 5_000));
}

/// Promotion readies the same attempt only once `until` has passed.
pub async fn promote_due_readies_the_same_attempt_after_until(store: DynStore) {
    let f = flow(&store, TWICE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    defer(&store, &ready(&fx, &id, "call"), T0 + 100, T0 + 5_000).await;
    let early = store.task_promote_due(T0 + 4_999).await.expect("promote");
    assert!(
        early.ready.is_empty(),
        "promoted early: {:?}",
        names(&early)
    );
    let fx = store.task_promote_due(T0 + 5_000).await.expect("promote");
    assert_eq!(names(&fx), vec![(id.clone(), "call".into(), 1)]);
    let d = detail(&store, &id).await;
    assert_eq!(task(&d, "call").state, TaskState::Ready);
    assert_eq!(
        task(&d, "call").deferred.as_ref().map(|x| x.count),
        Some(1),
        "the reason stays until the next attempt result"
    );
}

/// Deferrals leave the retry budget whole: after two deferrals the task still gets both of
/// its attempts, and the failure that follows clears the deferral.
pub async fn deferrals_leave_the_retry_budget_unchanged(store: DynStore) {
    let f = flow(&store, TWICE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    defer(&store, &ready(&fx, &id, "call"), T0 + 100, T0 + 1_000).await;
    let fx = store.task_promote_due(T0 + 1_000).await.expect("promote");
    defer(&store, &ready(&fx, &id, "call"), T0 + 1_100, T0 + 2_000).await;
    assert_eq!(
        task(&detail(&store, &id).await, "call")
            .deferred
            .as_ref()
            .map(|x| x.count),
        Some(2)
    );
    let fx = store.task_promote_due(T0 + 2_000).await.expect("promote");
    let first = ready(&fx, &id, "call");
    assert_eq!(first.attempt, 1);
    let fx = fail(&store, &first, T0 + 2_100, "HTTP 503", true).await;
    assert_eq!(
        fx.next_due,
        Some(T0 + 3_100),
        "attempt 1 of 2 failed: a retry"
    );
    let d = detail(&store, &id).await;
    let call = task(&d, "call");
    assert_eq!((call.state, call.attempt), (TaskState::Pending, 2));
    assert_eq!(call.deferred, None, "an attempt result clears the deferral");
    let numbers: Vec<u32> = call.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, vec![1]);

    let fx = store.task_promote_due(T0 + 3_100).await.expect("promote");
    fail(
        &store,
        &ready(&fx, &id, "call"),
        T0 + 3_200,
        "HTTP 503",
        true,
    )
    .await;
    let d = detail(&store, &id).await;
    assert_eq!(
        task(&d, "call").state,
        TaskState::Dead,
        "2 attempts, both used"
    );
    assert_eq!(d.run.state, RunState::Failed);
}

/// A success after a deferral clears the reason and carries the run on.
pub async fn success_after_deferral_clears_it(store: DynStore) {
    let f = flow(&store, TWICE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    defer(&store, &ready(&fx, &id, "call"), T0 + 100, T0 + 1_000).await;
    let fx = store.task_promote_due(T0 + 1_000).await.expect("promote");
    let fx = succeed(
        &store,
        &ready(&fx, &id, "call"),
        T0 + 1_100,
        json!({"ok": 1}),
    )
    .await;
    assert_eq!(names(&fx), vec![(id.clone(), "after".into(), 1)]);
    let d = detail(&store, &id).await;
    let call = task(&d, "call");
    assert_eq!((call.state, call.attempt), (TaskState::Succeeded, 1));
    assert_eq!(call.deferred, None);
    assert!(call.attempts.is_empty());
}

/// A deferral for an attempt that is no longer current, or for a task that is no longer
/// ready, changes nothing.
pub async fn stale_deferral_is_ignored(store: DynStore) {
    let f = flow(&store, TWICE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let first = ready(&fx, &id, "call");
    defer(&store, &first, T0 + 100, T0 + 1_000).await;
    let before = snapshot(&store, &id).await;
    let fx = defer(&store, &first, T0 + 200, T0 + 9_000).await;
    assert!(fx.changes.is_empty() && fx.next_due.is_none(), "{fx:?}");
    assert_eq!(
        snapshot(&store, &id).await,
        before,
        "a pending task is not deferred again"
    );

    let fx = store.task_promote_due(T0 + 1_000).await.expect("promote");
    fail(&store, &ready(&fx, &id, "call"), T0 + 1_100, "boom", true).await;
    let before = snapshot(&store, &id).await;
    let fx = store.task_promote_due(T0 + 2_100).await.expect("promote");
    assert_eq!(ready(&fx, &id, "call").attempt, 2);
    let after_promote = snapshot(&store, &id).await;
    assert_ne!(after_promote, before);
    let fx = defer(&store, &first, T0 + 2_200, T0 + 9_000).await;
    assert!(fx.changes.is_empty(), "attempt 1 is stale: {fx:?}");
    assert_eq!(snapshot(&store, &id).await, after_promote);
}

/// A deferred task whose run is cancelled no longer reports a deferral: it will not run.
pub async fn cancelled_task_shows_no_deferral(store: DynStore) {
    let f = flow(&store, TWICE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    defer(&store, &ready(&fx, &id, "call"), T0 + 100, T0 + 5_000).await;
    store.run_cancel(&id).await.expect("cancel");
    let d = detail(&store, &id).await;
    let call = task(&d, "call");
    assert_eq!(call.state, TaskState::Cancelled);
    assert_eq!(call.deferred, None);
    let fx = store.task_promote_due(T0 + 5_000).await.expect("promote");
    assert!(fx.ready.is_empty(), "{:?}", names(&fx));
}
