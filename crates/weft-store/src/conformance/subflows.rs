//! Subflows: a task that starts a child run is suspended until the child finishes, then
//! resumes with the child's outputs, or fails by its own retry policy.

use super::fixture::{
    Flow, T0, assert_quiet, by_run, detail, fail, finished, flow, names, ready, snapshot, start,
    succeed, task,
};
use crate::{DynStore, Effects, Outcome, ReadyTask};
use serde_json::json;
use weft_core::{RunState, TaskState};

const CHILD: &str = "
name: child
nodes:
  c1: {type: noop}
  c2: {type: noop, needs: [c1]}
";

const PARENT: &str = "
name: parent
nodes:
  prep: {type: noop}
  sub: {type: subflow, needs: [prep], params: {flow: child}}
  after: {type: noop, needs: [sub]}
";

const PARENT_RETRY: &str = "
name: parent_retry
nodes:
  sub:
    type: subflow
    params: {flow: child}
    retry: {max_attempts: 2, initial_delay: 1s, jitter: 0.0}
  after: {type: noop, needs: [sub]}
";

/// Reports `sub` as starting a child run, keyed as the engine keys it; returns the child id.
async fn start_child(
    store: &DynStore,
    child: &Flow,
    sub: &ReadyTask,
    at: i64,
) -> (String, Effects) {
    let mut run = child.child_of(&sub.run_id, &sub.node, at);
    run.idempotency_key = Some(format!(
        "parent:{}:{}:{}",
        sub.run_id, sub.node, sub.attempt
    ));
    let id = run.id.clone();
    let fx = super::fixture::complete(store, sub, at, Outcome::StartChild(Box::new(run))).await;
    (id, fx)
}

/// A parent run of [`PARENT`] whose `sub` task has started a child; returns both ids.
pub(crate) async fn suspended(store: &DynStore) -> (String, String, Effects) {
    let child = flow(store, CHILD).await;
    let parent = flow(store, PARENT).await;
    let (pid, fx) = start(store, parent.run(json!({"p": 1}), T0)).await;
    let fx = succeed(store, &ready(&fx, &pid, "prep"), T0 + 100, json!(null)).await;
    let (cid, fx) = start_child(store, &child, &ready(&fx, &pid, "sub"), T0 + 200).await;
    (pid, cid, fx)
}

/// Starting a child suspends the parent task (holding the child's id) and readies the
/// child's roots; the child records its parent.
pub async fn start_child_suspends_parent_and_readies_child(store: DynStore) {
    let (pid, cid, fx) = suspended(&store).await;
    assert_eq!(names(&fx), vec![(cid.clone(), "c1".into(), 1)]);
    assert!(fx.finished.is_empty(), "{fx:?}");

    let p = detail(&store, &pid).await;
    assert_eq!(p.run.state, RunState::Running);
    let sub = task(&p, "sub");
    assert_eq!(sub.state, TaskState::Suspended);
    assert_eq!(sub.child_run.as_deref(), Some(cid.as_str()));
    assert_eq!(task(&p, "after").state, TaskState::Waiting);

    let c = detail(&store, &cid).await;
    assert_eq!(c.run.flow, "child");
    assert_eq!(c.run.parent_run.as_deref(), Some(pid.as_str()));
    assert_eq!(c.run.parent_node.as_deref(), Some("sub"));
    assert_eq!(task(&c, "c1").state, TaskState::Ready);
    assert_eq!(task(&c, "c2").state, TaskState::Waiting);
}

/// The child's success resumes the parent task with the child's outputs by node, and the
/// parent's successors become ready.
pub async fn child_success_resumes_parent_with_outputs(store: DynStore) {
    let (pid, cid, fx) = suspended(&store).await;
    let fx = succeed(&store, &ready(&fx, &cid, "c1"), T0 + 300, json!({"n": 1})).await;
    assert_eq!(names(&fx), vec![(cid.clone(), "c2".into(), 1)]);
    let fx = succeed(&store, &ready(&fx, &cid, "c2"), T0 + 400, json!("done")).await;
    assert_eq!(finished(&fx), vec![(cid.clone(), RunState::Succeeded)]);
    assert_eq!(names(&fx), vec![(pid.clone(), "after".into(), 1)]);

    let p = detail(&store, &pid).await;
    let sub = task(&p, "sub");
    assert_eq!(sub.state, TaskState::Succeeded);
    assert_eq!(sub.output, Some(json!({"c1": {"n": 1}, "c2": "done"})));
    assert_eq!(p.run.state, RunState::Running);

    let fx = succeed(&store, &ready(&fx, &pid, "after"), T0 + 500, json!(null)).await;
    assert_eq!(finished(&fx), vec![(pid.clone(), RunState::Succeeded)]);
}

/// A failed child fails the parent task's attempt; with attempts left it is retried, and
/// failing the last attempt kills it and fails the parent run.
pub async fn child_failure_retries_parent_task(store: DynStore) {
    let child = flow(&store, CHILD).await;
    let parent = flow(&store, PARENT_RETRY).await;
    let (pid, fx) = start(&store, parent.run(json!(null), T0)).await;
    let (c1, fx) = start_child(&store, &child, &ready(&fx, &pid, "sub"), T0 + 100).await;
    let fx = fail(&store, &ready(&fx, &c1, "c1"), T0 + 200, "boom", false).await;
    assert_eq!(
        finished(&fx),
        vec![(c1.clone(), RunState::Failed)],
        "parent not finished"
    );

    let p = detail(&store, &pid).await;
    let sub = task(&p, "sub");
    assert_eq!((sub.state, sub.attempt), (TaskState::Pending, 2));
    assert_eq!(
        sub.attempts.len(),
        1,
        "the child's failure is recorded as attempt 1"
    );
    let due = sub.scheduled_at.expect("a pending retry has a due time");
    assert_eq!(fx.next_due, Some(due), "the parent's back-off is reported");

    let fx = store.task_promote_due(due).await.expect("promote");
    let second = ready(&fx, &pid, "sub");
    assert_eq!(second.attempt, 2);
    let (c2, fx) = start_child(&store, &child, &second, due + 10).await;
    assert_ne!(c1, c2, "each attempt starts its own child");
    let fx = fail(&store, &ready(&fx, &c2, "c1"), due + 20, "boom", false).await;
    let expected = by_run(vec![
        (c2.clone(), RunState::Failed),
        (pid.clone(), RunState::Failed),
    ]);
    assert_eq!(finished(&fx), expected);

    let p = detail(&store, &pid).await;
    assert_eq!(
        (task(&p, "sub").state, task(&p, "sub").attempt),
        (TaskState::Dead, 2)
    );
    assert_eq!(task(&p, "after").state, TaskState::Waiting);
    let error = p.run.error.unwrap_or_default();
    assert!(
        error.contains("sub"),
        "parent error should name sub: {error:?}"
    );
}

/// With no retries, a failed child kills the parent task and fails the parent run.
pub async fn child_failure_kills_parent_task_without_retries(store: DynStore) {
    let (pid, cid, fx) = suspended(&store).await;
    let fx = fail(&store, &ready(&fx, &cid, "c1"), T0 + 300, "boom", false).await;
    let expected = by_run(vec![
        (cid.clone(), RunState::Failed),
        (pid.clone(), RunState::Failed),
    ]);
    assert_eq!(finished(&fx), expected);
    assert!(fx.ready.is_empty(), "{:?}", names(&fx));

    let p = detail(&store, &pid).await;
    assert_eq!(task(&p, "sub").state, TaskState::Dead);
    assert_eq!(task(&p, "after").state, TaskState::Waiting);
    let error = p.run.error.unwrap_or_default();
    assert!(
        error.contains("sub"),
        "parent error should name sub: {error:?}"
    );
}

/// A `StartChild` for an attempt that is not current is ignored like any stale result: no
/// child run is created and nothing becomes ready.
pub async fn stale_start_child_is_ignored(store: DynStore) {
    let child = flow(&store, CHILD).await;
    let parent = flow(&store, PARENT_RETRY).await;
    let (pid, fx) = start(&store, parent.run(json!(null), T0)).await;
    let before = snapshot(&store, &pid).await;
    let mut stale = ready(&fx, &pid, "sub");
    stale.attempt = 2;
    let (cid, fx) = start_child(&store, &child, &stale, T0 + 100).await;
    // The trap: creating the child before checking the parent task is still at this attempt
    // commits an orphan child whose roots run while no parent waits for it.
    assert_quiet(&fx, "stale StartChild");
    let orphan = store.run_get(&cid).await.expect("run_get");
    assert!(
        orphan.is_none(),
        "a stale StartChild created child run {cid}"
    );
    assert_eq!(
        snapshot(&store, &pid).await,
        before,
        "the parent is untouched"
    );
}
