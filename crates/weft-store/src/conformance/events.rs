//! Events: the [`Change`](crate::Change)s a write reports, in the order it made them, so
//! the engine can publish run and node events without reading the store back.

use super::fixture::{T0, complete, fail, flow, ready, start, succeed};
use crate::{Change, DynStore, Effects, FinishedRun, Outcome, TaskChange};
use serde_json::json;
use weft_core::{RunState, TaskState};

const ONE: &str = "name: one\nnodes:\n  a: {type: noop}\n";

const RETRYING: &str = "
name: retrying
nodes:
  a:
    type: fail
    retry: {max_attempts: 3, initial_delay: 1s, jitter: 0.0}
";

const BRANCHING: &str = r#"
name: branching
nodes:
  check:
    type: branch
    params: {condition: "{{ input.big }}", then: [big], else: [small]}
  big: {type: noop, needs: [check]}
  small: {type: noop, needs: [check]}
"#;

const TIMED: &str = "
name: timed
nodes:
  a: {type: noop}
  b: {type: noop, needs: [a]}
  wait: {type: delay, params: {duration: 1h}}
";

const CHILD: &str = "name: child\nnodes:\n  c1: {type: noop}\n";
const PARENT: &str = "
name: parent
nodes:
  sub: {type: subflow, params: {flow: child}}
";

fn change(run: &str, flow: &str, node: &str, state: TaskState, attempt: u32, at: i64) -> Change {
    Change::Task(TaskChange {
        run_id: run.into(),
        flow: flow.into(),
        node: node.into(),
        state,
        attempt,
        error: None,
        next_attempt_at: None,
        at,
    })
}

fn created(run: &str, flow: &str, state: RunState, at: i64) -> Change {
    Change::RunCreated {
        run_id: run.into(),
        flow: flow.into(),
        state,
        at,
    }
}

/// `(node, state)` of the task changes.
fn task_states(fx: &Effects) -> Vec<(String, TaskState)> {
    fx.changes
        .iter()
        .filter_map(|c| match c {
            Change::Task(t) => Some((t.node.clone(), t.state)),
            _ => None,
        })
        .collect()
}

/// Creating a run reports it, queued; a `delay` root makes it start running at once.
pub async fn create_reports_the_new_run(store: DynStore) {
    let f = flow(&store, ONE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    assert_eq!(fx.changes, vec![created(&id, "one", RunState::Queued, T0)]);

    let f = flow(&store, TIMED).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    assert_eq!(
        fx.changes,
        vec![created(&id, "timed", RunState::Running, T0)]
    );
}

/// A success reports the task, then the run it finished (also in `finished`).
pub async fn success_reports_task_then_finished_run(store: DynStore) {
    let f = flow(&store, ONE).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let fx = succeed(&store, &ready(&fx, &id, "a"), T0 + 100, json!(1)).await;
    let run = FinishedRun {
        id: id.clone(),
        flow: "one".into(),
        state: RunState::Succeeded,
        created_at: T0,
        finished_at: T0 + 100,
    };
    let expected = vec![
        change(&id, "one", "a", TaskState::Succeeded, 1, T0 + 100),
        Change::RunFinished {
            run: run.clone(),
            error: None,
        },
    ];
    assert_eq!(fx.changes, expected);
    assert_eq!(fx.finished, vec![run]);
}

/// A retried failure reports the error and when the next attempt is due; the last failure
/// reports the dead task, then the failed run with its cause. Promotion reports nothing
/// but the ready task.
pub async fn failures_report_errors_retries_and_dead_tasks(store: DynStore) {
    let f = flow(&store, RETRYING).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let fx = fail(&store, &ready(&fx, &id, "a"), T0 + 100, "boom 1", true).await;
    let retry = TaskChange {
        run_id: id.clone(),
        flow: "retrying".into(),
        node: "a".into(),
        state: TaskState::Pending,
        attempt: 1,
        error: Some("boom 1".into()),
        next_attempt_at: Some(T0 + 1_100),
        at: T0 + 100,
    };
    assert_eq!(fx.changes, vec![Change::Task(retry)]);

    let fx = store.task_promote_due(T0 + 1_100).await.expect("promote");
    assert!(fx.changes.is_empty(), "{:?}", fx.changes);
    let a2 = ready(&fx, &id, "a");
    assert_eq!(a2.attempt, 2);

    let fx = fail(&store, &a2, T0 + 2_000, "boom 2", false).await;
    let dead = TaskChange {
        state: TaskState::Dead,
        attempt: 2,
        error: Some("boom 2".into()),
        ..match change(&id, "retrying", "a", TaskState::Dead, 2, T0 + 2_000) {
            Change::Task(t) => t,
            _ => unreachable!(),
        }
    };
    assert_eq!(fx.changes.len(), 2, "{:?}", fx.changes);
    assert_eq!(fx.changes[0], Change::Task(dead));
    match &fx.changes[1] {
        Change::RunFinished { run, error } => {
            assert_eq!(
                (run.id.as_str(), run.state),
                (id.as_str(), RunState::Failed)
            );
            assert_eq!(error.as_deref(), Some("node a: boom 2"));
        }
        other => panic!("expected the failed run, got {other:?}"),
    }
}

/// A branch reports its success, then the node on the path not taken as skipped.
pub async fn branch_reports_skipped_nodes(store: DynStore) {
    let f = flow(&store, BRANCHING).await;
    let (id, fx) = start(&store, f.run(json!({"big": true}), T0)).await;
    let fx = succeed(
        &store,
        &ready(&fx, &id, "check"),
        T0 + 10,
        json!({"taken": "then"}),
    )
    .await;
    assert_eq!(
        task_states(&fx),
        vec![
            ("check".into(), TaskState::Succeeded),
            ("small".into(), TaskState::Skipped)
        ]
    );
    ready(&fx, &id, "big");
}

/// Cancel reports every unfinished task as cancelled, then the run.
pub async fn cancel_reports_cancelled_tasks_then_run(store: DynStore) {
    let f = flow(&store, TIMED).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    succeed(&store, &ready(&fx, &id, "a"), T0 + 10, json!(null)).await;
    let fx = store.run_cancel(&id).await.expect("run_cancel");
    let mut states = task_states(&fx);
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        vec![
            ("b".into(), TaskState::Cancelled),
            ("wait".into(), TaskState::Cancelled)
        ]
    );
    match fx.changes.last() {
        Some(Change::RunFinished { run, error: None }) => {
            assert_eq!(
                (run.id.as_str(), run.state),
                (id.as_str(), RunState::Cancelled)
            );
        }
        other => panic!("expected the cancelled run last, got {other:?}"),
    }
}

/// Starting a child reports the parent task suspended, then the child run created.
pub async fn start_child_reports_suspension_then_child(store: DynStore) {
    let child = flow(&store, CHILD).await;
    let parent = flow(&store, PARENT).await;
    let (pid, fx) = start(&store, parent.run(json!(null), T0)).await;
    let run = child.child_of(&pid, "sub", T0 + 20);
    let cid = run.id.clone();
    let sub = ready(&fx, &pid, "sub");
    let fx = complete(&store, &sub, T0 + 20, Outcome::StartChild(Box::new(run))).await;
    assert_eq!(
        fx.changes,
        vec![
            change(&pid, "parent", "sub", TaskState::Suspended, 1, T0 + 20),
            created(&cid, "child", RunState::Queued, T0 + 20),
        ]
    );
}

/// Replaying a dead task of a failed run reports the run resumed; the task is ready.
pub async fn replay_reports_the_run_resumed(store: DynStore) {
    let f = flow(&store, RETRYING).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    fail(&store, &ready(&fx, &id, "a"), T0 + 100, "boom", false).await;
    let fx = store.dlq_replay(&id, "a").await.expect("dlq_replay");
    assert_eq!(fx.changes.len(), 1, "{:?}", fx.changes);
    match &fx.changes[0] {
        Change::RunResumed { run_id, flow, .. } => {
            assert_eq!((run_id.as_str(), flow.as_str()), (id.as_str(), "retrying"));
        }
        other => panic!("expected the run resumed, got {other:?}"),
    }
    ready(&fx, &id, "a");
}
