//! Tasks: how a success moves the DAG forward (successors, joins, branches, the run's end),
//! which results are ignored, what a task's templates can read, and recovery at start-up.

use super::fixture::{
    T0, assert_quiet, detail, fail, flow, names, ready, ready_nodes, snapshot, start, state_of,
    succeed, task,
};
use crate::{DynStore, FinishedRun, Outcome, StoreError, TaskResult};
use serde_json::json;
use weft_core::{RunState, TaskState};

const CHAIN: &str = "
name: chain
nodes:
  a: {type: noop}
  b: {type: noop, needs: [a]}
  c: {type: noop, needs: [b]}
";

const JOIN: &str = "
name: join
nodes:
  a: {type: noop}
  b: {type: noop}
  c: {type: noop}
  j: {type: noop, needs: [a, b, c]}
";

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
  prep: {type: noop}
  check:
    type: branch
    needs: [prep]
    params: {condition: "{{ input.big }}", then: [big], else: [small]}
  big: {type: noop, needs: [check]}
  small: {type: noop, needs: [prep, check]}
  small_next: {type: noop, needs: [small]}
  merge: {type: noop, needs: [big, small_next]}
"#;

/// A node's success records its output and readies its successor (only that one).
pub async fn success_readies_successor(store: DynStore) {
    let f = flow(&store, CHAIN).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let fx = succeed(&store, &ready(&fx, &id, "a"), T0 + 100, json!({"v": 1})).await;
    assert_eq!(names(&fx), vec![(id.clone(), "b".into(), 1)]);
    assert!(fx.finished.is_empty() && fx.next_due.is_none());

    let d = detail(&store, &id).await;
    assert_eq!(d.run.state, RunState::Running);
    let a = task(&d, "a");
    assert_eq!(a.state, TaskState::Succeeded);
    assert_eq!(a.output, Some(json!({"v": 1})));
    assert_eq!(a.finished_at, Some(T0 + 100));
    assert_eq!(task(&d, "b").state, TaskState::Ready);
    assert_eq!(task(&d, "c").state, TaskState::Waiting);
}

/// One result in a batch that cannot be applied (its flow version does not exist) does not
/// cost the other results their effects: their successors still become ready.
pub async fn one_bad_result_does_not_lose_the_batchs_effects(store: DynStore) {
    let f = flow(&store, CHAIN).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let good = ready(&fx, &id, "a");
    let mut bad = good.clone();
    bad.version = 999;
    let result = |task, outcome| TaskResult {
        task,
        started_at: T0,
        finished_at: T0 + 100,
        outcome,
    };
    let fx = store
        .task_complete(vec![
            result(bad, Outcome::Succeeded(json!(1))),
            result(good, Outcome::Succeeded(json!(2))),
        ])
        .await
        .expect("a bad result is skipped, not an error for the batch");
    assert_eq!(names(&fx), vec![(id.clone(), "b".into(), 1)]);
    assert_eq!(task(&detail(&store, &id).await, "a").output, Some(json!(2)));
}

/// A join is ready only once every node it needs has succeeded.
pub async fn join_waits_for_every_need(store: DynStore) {
    let f = flow(&store, JOIN).await;
    let (id, fx0) = start(&store, f.run(json!(null), T0)).await;
    for (i, parent) in ["a", "b"].into_iter().enumerate() {
        let fx = succeed(
            &store,
            &ready(&fx0, &id, parent),
            T0 + 10 * i as i64,
            json!(i),
        )
        .await;
        assert!(fx.ready.is_empty(), "j readied after only {parent}");
        assert_eq!(state_of(&store, &id, "j").await, TaskState::Waiting);
    }
    let fx = succeed(&store, &ready(&fx0, &id, "c"), T0 + 30, json!(2)).await;
    assert_eq!(names(&fx), vec![(id.clone(), "j".into(), 1)]);
    assert_eq!(state_of(&store, &id, "j").await, TaskState::Ready);
}

/// The last success finishes the run, reported once, at that result's time; also when the
/// last results arrive in one batch with a duplicate.
pub async fn last_success_finishes_run_once(store: DynStore) {
    let f = flow(&store, CHAIN).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let fx = succeed(&store, &ready(&fx, &id, "a"), T0 + 100, json!(1)).await;
    let fx = succeed(&store, &ready(&fx, &id, "b"), T0 + 200, json!(2)).await;
    let c = ready(&fx, &id, "c");
    let fx = succeed(&store, &c, T0 + 300, json!(3)).await;
    let expected = FinishedRun {
        id: id.clone(),
        flow: "chain".into(),
        state: RunState::Succeeded,
        created_at: T0,
        finished_at: T0 + 300,
    };
    assert_eq!(fx.finished, vec![expected]);
    assert!(fx.ready.is_empty());
    let d = detail(&store, &id).await;
    assert_eq!(
        (d.run.state, d.run.finished_at),
        (RunState::Succeeded, Some(T0 + 300))
    );
    assert_eq!(d.run.error, None);
    assert_quiet(
        &succeed(&store, &c, T0 + 400, json!(4)).await,
        "repeat of c",
    );

    let pair = flow(
        &store,
        "name: pair\nnodes:\n  a: {type: noop}\n  b: {type: noop}\n",
    )
    .await;
    let (id, fx) = start(&store, pair.run(json!(null), T0)).await;
    let result = |node: &str| TaskResult {
        task: ready(&fx, &id, node),
        started_at: T0 + 1,
        finished_at: T0 + 2,
        outcome: Outcome::Succeeded(json!(node)),
    };
    let batch = vec![result("a"), result("b"), result("b")];
    let fx = store.task_complete(batch).await.expect("task_complete");
    let finished: Vec<_> = fx
        .finished
        .iter()
        .map(|r| (r.id.as_str(), r.state))
        .collect();
    assert_eq!(finished, vec![(id.as_str(), RunState::Succeeded)]);
}

/// A result for an attempt other than the current one changes nothing.
pub async fn stale_attempt_result_is_ignored(store: DynStore) {
    let f = flow(&store, RETRYING).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let before = snapshot(&store, &id).await;
    let mut forged = ready(&fx, &id, "a");
    forged.attempt = 2;
    assert_quiet(
        &succeed(&store, &forged, T0 + 10, json!(1)).await,
        "success of attempt 2",
    );
    assert_quiet(
        &fail(&store, &forged, T0 + 10, "x", true).await,
        "failure of attempt 2",
    );
    assert_eq!(snapshot(&store, &id).await, before, "the task is untouched");
}

/// Results for a task that already finished (succeeded or dead) change nothing.
pub async fn result_for_finished_task_is_ignored(store: DynStore) {
    let f = flow(&store, CHAIN).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    let a = ready(&fx, &id, "a");
    succeed(&store, &a, T0 + 100, json!("first")).await;
    let before = snapshot(&store, &id).await;
    assert_quiet(
        &succeed(&store, &a, T0 + 200, json!("second")).await,
        "second success",
    );
    assert_quiet(
        &fail(&store, &a, T0 + 200, "late", false).await,
        "late failure",
    );
    assert_eq!(snapshot(&store, &id).await, before);
    assert_eq!(
        task(&detail(&store, &id).await, "a").output,
        Some(json!("first"))
    );

    let once = flow(&store, "name: once\nnodes:\n  x: {type: fail}\n").await;
    let (id, fx) = start(&store, once.run(json!(null), T0)).await;
    let x = ready(&fx, &id, "x");
    fail(&store, &x, T0 + 100, "boom", true).await;
    let before = snapshot(&store, &id).await;
    assert_quiet(
        &succeed(&store, &x, T0 + 200, json!(1)).await,
        "success after dead",
    );
    assert_eq!(snapshot(&store, &id).await, before);
}

/// A branch's choice skips the other path, even a node there whose other needs succeeded,
/// and what only that path leads to; the merge after both paths still runs.
pub async fn branch_skips_path_not_taken(store: DynStore) {
    let f = flow(&store, BRANCHING).await;
    for (taken, on, off) in [("then", "big", "small"), ("else", "small", "big")] {
        let (id, fx) = start(&store, f.run(json!({"big": taken == "then"}), T0)).await;
        let fx = succeed(&store, &ready(&fx, &id, "prep"), T0 + 5, json!(null)).await;
        let check = ready(&fx, &id, "check");
        let mut fx = succeed(&store, &check, T0 + 10, json!({"taken": taken})).await;
        assert_eq!(ready_nodes(&fx, &id), vec![on.to_string()], "taken {taken}");
        assert_eq!(state_of(&store, &id, off).await, TaskState::Skipped);
        if taken == "then" {
            let d = detail(&store, &id).await;
            assert_eq!(
                task(&d, "small_next").state,
                TaskState::Skipped,
                "all needs skipped"
            );
            assert_eq!(task(&d, "merge").state, TaskState::Waiting);
        }
        let mut at = T0 + 20;
        while let Some(next) = fx.ready.first().cloned() {
            assert!(fx.finished.is_empty(), "run finished before {}", next.node);
            fx = succeed(&store, &next, at, json!(null)).await;
            at += 10;
        }
        let d = detail(&store, &id).await;
        assert_eq!(
            task(&d, "merge").state,
            TaskState::Succeeded,
            "taken {taken}"
        );
        assert_eq!(d.run.state, RunState::Succeeded, "taken {taken}");
        let finished: Vec<&str> = fx.finished.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(finished, vec![id.as_str()]);
    }
}

/// Inputs are the run's input and the outputs of the named upstream nodes.
pub async fn inputs_return_run_input_and_upstream_outputs(store: DynStore) {
    let yaml = "
name: inputs
nodes:
  a: {type: noop}
  b: {type: noop}
  c: {type: noop, needs: [a, b]}
";
    let f = flow(&store, yaml).await;
    let (id, fx) = start(&store, f.run(json!({"x": 1}), T0)).await;
    succeed(&store, &ready(&fx, &id, "a"), T0 + 10, json!({"v": 1})).await;
    succeed(&store, &ready(&fx, &id, "b"), T0 + 20, json!("two")).await;

    let nodes = ["a".to_string(), "b".to_string()];
    let (input, outputs) = store.task_inputs(&id, &nodes).await.expect("task_inputs");
    assert_eq!(input, json!({"x": 1}));
    assert_eq!(
        serde_json::Value::Object(outputs),
        json!({"a": {"v": 1}, "b": "two"})
    );
    let (input, outputs) = store.task_inputs(&id, &[]).await.expect("task_inputs");
    assert_eq!((input, outputs.len()), (json!({"x": 1}), 0));
}

/// Inputs of an unknown run are `NotFound`.
pub async fn inputs_of_missing_run_is_not_found(store: DynStore) {
    let missing = uuid::Uuid::now_v7().to_string();
    match store.task_inputs(&missing, &["a".to_string()]).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Recovery reports every ready task (and nothing else) and the earliest pending timer.
pub async fn recover_reports_ready_tasks_and_earliest_timer(store: DynStore) {
    let empty = store.task_recover().await.expect("task_recover");
    assert!(
        empty.ready.is_empty() && empty.next_due.is_none(),
        "{empty:?}"
    );

    let join = flow(&store, JOIN).await;
    let (r1, fx) = start(&store, join.run(json!(null), T0)).await;
    succeed(&store, &ready(&fx, &r1, "a"), T0 + 10, json!(null)).await;
    let later =
        "name: later\nnodes:\n  wait: {type: delay, params: {duration: 5s}}\n  go: {type: noop}\n";
    let later = flow(&store, later).await;
    let (r2, _) = start(&store, later.run(json!(null), T0)).await;
    let retrying = flow(&store, RETRYING).await;
    let (r3, fx) = start(&store, retrying.run(json!(null), T0)).await;
    fail(&store, &ready(&fx, &r3, "a"), T0 + 10, "again", true).await;

    let fx = store.task_recover().await.expect("task_recover");
    let mut expected = vec![
        (r1.clone(), "b".to_string(), 1),
        (r1.clone(), "c".to_string(), 1),
        (r2.clone(), "go".to_string(), 1),
    ];
    expected.sort();
    assert_eq!(
        names(&fx),
        expected,
        "ready tasks only: no succeeded, waiting or pending"
    );
    assert_eq!(
        fx.next_due,
        Some(T0 + 10 + 1_000),
        "the retry is due before the delay"
    );
    assert!(fx.finished.is_empty() && fx.cancelled.is_empty());
    let again = store.task_recover().await.expect("task_recover again");
    assert_eq!(names(&again), expected, "recovery is repeatable");
}
