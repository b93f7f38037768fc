//! Helpers the cases share: flows from YAML, runs, attempt results and lookups. They panic
//! with a message naming what was expected, so a failing case reads like a sentence.

use crate::{
    DynStore, Effects, NewRun, Outcome, ReadyTask, RunDetail, StoreError, TaskRecord, TaskResult,
};
use serde_json::Value;
use std::sync::Arc;
use weft_core::time::Millis;
use weft_core::{CompiledFlow, FlowSpec, RunState, TaskState};

/// The time the cases start at; every timestamp they pass is an offset from it.
pub(crate) const T0: Millis = 1_700_000_000_000;

/// A stored flow version, compiled.
pub(crate) struct Flow {
    pub compiled: Arc<CompiledFlow>,
    pub version: u32,
}

/// Parses a fixture flow document.
pub(crate) fn spec(yaml: &str) -> FlowSpec {
    weft_core::parse_flow(yaml).unwrap_or_else(|e| panic!("fixture flow does not parse: {e}"))
}

/// Stores `yaml` as a flow and compiles it.
pub(crate) async fn flow(store: &DynStore, yaml: &str) -> Flow {
    let spec = spec(yaml);
    let compiled = weft_core::compile(&spec)
        .unwrap_or_else(|e| panic!("fixture flow {} does not compile: {e}", spec.name));
    let (record, _) = store.flow_put(&spec).await.expect("flow_put");
    Flow {
        compiled: Arc::new(compiled),
        version: record.version,
    }
}

impl Flow {
    /// A new run of this flow with a fresh UUID v7 id.
    pub(crate) fn run(&self, input: Value, created_at: Millis) -> NewRun {
        NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            flow: self.compiled.clone(),
            version: self.version,
            input,
            idempotency_key: None,
            parent: None,
            created_at,
            start_at: None,
        }
    }

    /// A new run created at `at`, its id's UUID v7 time included (as the engine makes
    /// them): what retention goes by.
    pub(crate) fn run_at(&self, input: Value, at: Millis) -> NewRun {
        let ms = u64::try_from(at).expect("fixture times are after 1970");
        let ts =
            uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
        NewRun {
            id: uuid::Uuid::new_v7(ts).to_string(),
            ..self.run(input, at)
        }
    }

    /// A child run of this flow for the subflow task `node` of run `parent`.
    pub(crate) fn child_of(&self, parent: &str, node: &str, created_at: Millis) -> NewRun {
        NewRun {
            parent: Some((parent.to_string(), node.to_string())),
            ..self.run(Value::Null, created_at)
        }
    }
}

/// Creates one run, which must be new; returns its id and the effects.
pub(crate) async fn start(store: &DynStore, run: NewRun) -> (String, Effects) {
    let id = run.id.clone();
    let (created, fx) = store.run_create(vec![run]).await.expect("run_create");
    assert_eq!(created.len(), 1, "one RunCreated per NewRun");
    assert!(created[0].created, "a run without a key is always created");
    assert_eq!(created[0].id, id, "RunCreated carries the new run's id");
    (id, fx)
}

/// The task of `run` named `node` among `fx.ready`.
#[track_caller]
pub(crate) fn ready(fx: &Effects, run: &str, node: &str) -> ReadyTask {
    fx.ready
        .iter()
        .find(|t| &*t.run_id == run && &*t.node == node)
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "expected {node} of run {run} in effects.ready, got {:?}",
                names(fx)
            )
        })
}

/// `(run, node, attempt)` of every ready task, sorted.
pub(crate) fn names(fx: &Effects) -> Vec<(String, String, u32)> {
    let mut v: Vec<_> = fx
        .ready
        .iter()
        .map(|t| (t.run_id.to_string(), t.node.to_string(), t.attempt))
        .collect();
    v.sort();
    v
}

/// Node names of the ready tasks of `run`, sorted.
pub(crate) fn ready_nodes(fx: &Effects, run: &str) -> Vec<String> {
    let mut v: Vec<String> = fx
        .ready
        .iter()
        .filter(|t| &*t.run_id == run)
        .map(|t| t.node.to_string())
        .collect();
    v.sort();
    v
}

/// `(run, state)` of every run the write finished, sorted by run id.
pub(crate) fn finished(fx: &Effects) -> Vec<(String, RunState)> {
    let mut v: Vec<_> = fx
        .finished
        .iter()
        .map(|r| (r.id.clone(), r.state))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Sorts `(run, state)` pairs by run id, to compare with [`finished`].
pub(crate) fn by_run(mut v: Vec<(String, RunState)>) -> Vec<(String, RunState)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Asserts a write changed nothing the engine would act on.
#[track_caller]
pub(crate) fn assert_quiet(fx: &Effects, what: &str) {
    assert!(
        fx.ready.is_empty() && fx.finished.is_empty() && fx.cancelled.is_empty(),
        "{what}: expected no effects, got {fx:?}"
    );
    assert_eq!(fx.next_due, None, "{what}: expected no timer");
}

/// Reports one attempt result, finished at `at` (started 10 ms before).
pub(crate) async fn complete(
    store: &DynStore,
    task: &ReadyTask,
    at: Millis,
    outcome: Outcome,
) -> Effects {
    store
        .task_complete(vec![TaskResult {
            task: task.clone(),
            started_at: at - 10,
            finished_at: at,
            outcome,
        }])
        .await
        .expect("task_complete")
}

/// Reports a success with `output`.
pub(crate) async fn succeed(
    store: &DynStore,
    task: &ReadyTask,
    at: Millis,
    output: Value,
) -> Effects {
    complete(store, task, at, Outcome::Succeeded(output)).await
}

/// Reports a failure.
pub(crate) async fn fail(
    store: &DynStore,
    task: &ReadyTask,
    at: Millis,
    error: &str,
    retryable: bool,
) -> Effects {
    let outcome = Outcome::Failed {
        error: error.to_string(),
        retryable,
    };
    complete(store, task, at, outcome).await
}

/// A run that must exist.
pub(crate) async fn detail(store: &DynStore, run: &str) -> RunDetail {
    store
        .run_get(run)
        .await
        .expect("run_get")
        .unwrap_or_else(|| panic!("run {run} should exist"))
}

/// The task named `node` in `d`.
#[track_caller]
pub(crate) fn task<'a>(d: &'a RunDetail, node: &str) -> &'a TaskRecord {
    d.tasks
        .iter()
        .find(|t| t.node == node)
        .unwrap_or_else(|| panic!("run {} has no task {node}", d.run.id))
}

/// The state of task `node` of `run`.
pub(crate) async fn state_of(store: &DynStore, run: &str, node: &str) -> TaskState {
    task(&detail(store, run).await, node).state
}

/// Everything the store reports about a run, for "nothing changed" checks.
pub(crate) async fn snapshot(store: &DynStore, run: &str) -> Value {
    serde_json::to_value(detail(store, run).await).expect("RunDetail serializes")
}

/// Asserts a store call failed with `NotFound` or `Conflict` (either is a fair refusal).
#[track_caller]
pub(crate) fn assert_refused<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected NotFound or Conflict, got {other:?}"),
    }
}
