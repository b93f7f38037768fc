//! The worker runtime: one dispatcher per queue starts attempts while the queue has free
//! slots; each attempt renders its parameters, runs its handler under the node's timeout
//! and the run's cancellation, frees its slot, then reports the result to the store.
//!
//! The slot is freed before the result is committed, so a slow commit never idles a
//! worker; a crash between the two re-runs the attempt (at-least-once).

use crate::ClusterConfig;
use crate::engine::Inner;
use crate::events::{self, NodeEventState};
use crate::nodes::{self, NodeInput};
use crate::queue::Queue;
use futures::FutureExt;
use serde_json::{Value, json};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use weft_core::nodes::{NodeKind, SubflowParams};
use weft_core::{CompiledFlow, template};
use weft_store::{Outcome, ReadyTask, StoreError, TaskResult};

/// Most tasks a dispatcher starts per wake-up.
const DISPATCH_BATCH: usize = 256;

pub(crate) async fn dispatch(inner: Arc<Inner>, queue: Arc<Queue>) {
    loop {
        if inner.stopping.is_cancelled() {
            return;
        }
        let tasks = queue.take_runnable(DISPATCH_BATCH);
        if tasks.is_empty() {
            let poll = match &inner.config.cluster {
                Some(cluster) => {
                    if claim(&inner, &queue, cluster).await {
                        continue;
                    }
                    Some(cluster.poll)
                }
                None => None,
            };
            let poll_elapsed = async {
                match poll {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = queue.wake.notified() => {}
                _ = poll_elapsed => {}
                _ = inner.stopping.cancelled() => return,
            }
            continue;
        }
        for task in tasks {
            let token = CancellationToken::new();
            let started = inner.now();
            inner.inflight.lock().insert(
                (task.run_id.clone(), task.node.clone()),
                (started, token.clone()),
            );
            inner.inflight_count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(attempt(inner.clone(), queue.clone(), task, started, token));
        }
    }
}

/// Wakes this process's dispatchers when any process announces ready tasks through the
/// store (see `ClaimStore::ready_announcements`), so tasks another process wrote are
/// claimed now rather than at the next poll, which stays the fallback. Only queues this
/// worker serves are woken (or created: a queue first heard of here gets its dispatcher
/// as `cluster::discover` would have given it one).
pub(crate) async fn wake_on_announcements(inner: Arc<Inner>) {
    use tokio::sync::broadcast::error::RecvError;
    let Some(mut announced) = inner.store.ready_announcements() else {
        return;
    };
    loop {
        let name = tokio::select! {
            r = announced.recv() => r,
            _ = inner.stopping.cancelled() => return,
        };
        match name {
            Ok(name) if !name.is_empty() => {
                if weft_core::is_valid_name(&name) && inner.serves(&name) {
                    inner.queue(&name).wake.notify_one();
                }
            }
            // "" (the store may have missed announcements) or announcements this loop
            // missed: every queue might have work.
            Ok(_) | Err(RecvError::Lagged(_)) => inner.wake_served(),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Claims tasks of `queue` from the shared store for this worker's free slots; true if it
/// got any.
async fn claim(inner: &Arc<Inner>, queue: &Arc<Queue>, cluster: &ClusterConfig) -> bool {
    let want = queue.claimable().min(DISPATCH_BATCH as u32);
    if want == 0 {
        return false;
    }
    let lease_until = inner.now() + crate::cluster::ms(cluster.lease);
    let began = std::time::Instant::now();
    match inner
        .store
        .task_claim(&cluster.node_id, &queue.name, want, lease_until)
        .await
    {
        Ok(tasks) if tasks.is_empty() => false,
        Ok(tasks) => {
            crate::health::store_op("task_claim", began);
            queue.push(tasks);
            true
        }
        Err(e) => {
            tracing::warn!(queue = %queue.name, error = %e, "claiming tasks failed; trying again");
            false
        }
    }
}

async fn attempt(
    inner: Arc<Inner>,
    queue: Arc<Queue>,
    task: ReadyTask,
    started_at: i64,
    token: CancellationToken,
) {
    // Loaded once for both: the limiter needs it before the start, the attempt to run.
    let flow = inner.flow(&task.flow, task.version).await;
    // Parked on a concurrency key or rate limit: it comes back through its queue.
    let Some(held) = crate::limits::admit(&inner, &queue, &task, flow.as_ref().ok()).await else {
        return;
    };
    let outcome = guarded(execute(&inner, &task, flow, &token))
        .await
        .unwrap_or_else(|error| {
            tracing::error!(run = %task.run_id, node = %task.node, "{error}");
            Some(Outcome::Failed {
                error,
                retryable: true,
            })
        });
    queue.release();
    held.release(&inner, &task).await;
    inner
        .inflight
        .lock()
        .remove(&(task.run_id.clone(), task.node.clone()));
    let sent = outcome.is_some_and(|outcome| {
        let result = TaskResult {
            task,
            started_at,
            finished_at: inner.now(),
            outcome,
        };
        inner.completions.send(result)
    });
    if !sent && inner.inflight_count.fetch_sub(1, Ordering::SeqCst) == 1 {
        inner.idle.notify_waiters();
    }
}

/// Runs an attempt's future, turning a panic into an error message: a handler bug fails
/// that attempt (recorded, retried per policy) instead of taking the worker down.
async fn guarded<T>(attempt: impl std::future::Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(attempt)
        .catch_unwind()
        .await
        .map_err(|panic| {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("node handler panicked: {msg}")
        })
}

/// Where attempts send their results: one channel per completer lane. A run's results
/// always take the same lane, so they reach the store in the order they finished.
pub(crate) struct Completions {
    lanes: Vec<tokio::sync::mpsc::UnboundedSender<TaskResult>>,
}

impl Completions {
    /// `lanes` senders (at least one) and the receivers for their completers.
    pub fn new(lanes: usize) -> (Self, Vec<tokio::sync::mpsc::UnboundedReceiver<TaskResult>>) {
        let (senders, receivers) = (0..lanes.max(1))
            .map(|_| tokio::sync::mpsc::unbounded_channel())
            .unzip();
        (Self { lanes: senders }, receivers)
    }

    /// Hands a result to its run's lane; false once the completers are gone.
    pub fn send(&self, result: TaskResult) -> bool {
        let lane = if self.lanes.len() == 1 {
            0
        } else {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            let hash =
                BuildHasherDefault::<DefaultHasher>::default().hash_one(&*result.task.run_id);
            (hash % self.lanes.len() as u64) as usize
        };
        self.lanes[lane].send(result).is_ok()
    }
}

/// Most results committed in one store call.
const COMPLETION_BATCH: usize = 1024;

/// Commits attempt results in batches: one store call carries every result that finished
/// while the previous call was committing, so per-result overhead is paid once per batch.
/// Each lane (see [`Completions`]) has its own completer, so with several lanes that many
/// store calls overlap: a database that spends its time on the rows of a batch (PostgreSQL)
/// works on the next while the previous one commits.
/// While the store is unavailable (a full disk, say) results are kept and retried; an
/// attempt's in-flight count is released only once its result is committed (or given up
/// on during shutdown, in which case the attempt re-runs after restart).
pub(crate) async fn completer(
    inner: Arc<Inner>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<TaskResult>,
) {
    let mut batch = Vec::with_capacity(COMPLETION_BATCH);
    while rx.recv_many(&mut batch, COMPLETION_BATCH).await > 0 {
        let n = batch.len();
        commit(&inner, std::mem::take(&mut batch)).await;
        if inner.inflight_count.fetch_sub(n, Ordering::SeqCst) == n {
            inner.idle.notify_waiters();
        }
    }
}

async fn commit(inner: &Arc<Inner>, results: Vec<TaskResult>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let began = std::time::Instant::now();
        match inner.store.task_complete(results.clone()).await {
            Ok(fx) => {
                crate::health::store_op("task_complete", began);
                crate::health::attempts_recorded(&results);
                return inner.apply(fx);
            }
            Err(StoreError::Unavailable(e)) if !inner.stopping.is_cancelled() => {
                tracing::warn!(results = results.len(), error = %e, "cannot record results yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            // A result the store cannot apply is skipped by the store itself (the others keep
            // their effects; conformance case `one_bad_result_does_not_lose_the_batchs_effects`),
            // so an error for the whole call means the store is closed or we are stopping.
            Err(e) => {
                tracing::error!(results = results.len(), error = %e, "results not recorded; their attempts re-run after restart");
                return;
            }
        }
    }
}

/// Runs one attempt. `None` means the attempt was abandoned (its run was cancelled) and
/// nothing is to be reported.
async fn execute(
    inner: &Arc<Inner>,
    task: &ReadyTask,
    flow: Result<Arc<CompiledFlow>, crate::EngineError>,
    token: &CancellationToken,
) -> Option<Outcome> {
    let flow = match flow {
        Ok(f) => f,
        Err(e) => {
            return Some(Outcome::Failed {
                error: format!("cannot load flow: {e}"),
                retryable: true,
            });
        }
    };
    let Some(node) = flow.node(&task.node) else {
        return Some(Outcome::Failed {
            error: format!("node {} is not in flow {}", task.node, task.flow),
            retryable: false,
        });
    };
    announce(inner, &flow, task);
    let work = async {
        let context = match context(inner, &flow, task).await {
            Ok(c) => c,
            Err(o) => return o,
        };
        let params = if node.templated && node.kind != NodeKind::Branch {
            match template::render_value(&node.params, &context) {
                Ok(p) => p,
                Err(e) => {
                    return Outcome::Failed {
                        error: format!("rendering params: {e}"),
                        retryable: false,
                    };
                }
            }
        } else {
            node.params.clone()
        };
        if node.kind == NodeKind::Subflow {
            return start_child(inner, task, params).await;
        }
        // Only nodes with a breaker or an adaptive timeout pay for finding their target.
        let target = (node.breaker.is_some() || node.adaptive_timeout.is_some())
            .then(|| nodes::target(node.kind, &params, &inner.email))
            .flatten();
        let input = NodeInput {
            run_id: &task.run_id,
            node: &task.node,
            attempt: task.attempt,
            params,
            context: &context,
        };
        let call = nodes::run(node.kind, input, &inner.http, &inner.email);
        match target {
            Some(t) => nodes::guard::call(&inner.breakers, &*inner.clock, node, &t, call).await,
            None => call.await,
        }
    };
    tokio::select! {
        biased;
        _ = token.cancelled() => None,
        r = tokio::time::timeout(node.timeout, work) => Some(r.unwrap_or_else(|_| Outcome::Failed {
            error: format!("timed out after {}", weft_core::duration::format(node.timeout)),
            retryable: true,
        })),
    }
}

/// Publishes that an attempt started and, for the first attempt of the run's first root,
/// that the run started. (A run with a `delay` root started when it was created.)
fn announce(inner: &Inner, flow: &CompiledFlow, task: &ReadyTask) {
    let now = inner.now();
    let first_root = task.attempt == 1
        && flow.roots.first().copied() == flow.node_index(&task.node)
        && !flow
            .roots
            .iter()
            .any(|&r| flow.nodes[r].kind == NodeKind::Delay);
    let mut out = Vec::with_capacity(2);
    if first_root {
        out.push(events::run_started(task, now));
    }
    out.push(events::node_started(task, NodeEventState::Running, now));
    inner.log.publish(out);
}

/// The template context of a task: reads the store only when the node's templates need it.
async fn context(
    inner: &Arc<Inner>,
    flow: &CompiledFlow,
    task: &ReadyTask,
) -> Result<Value, Outcome> {
    let node = flow.node(&task.node).expect("checked by caller");
    if !node.templated {
        return Ok(Value::Null);
    }
    let (input, outputs) = inner
        .store
        .task_inputs(&task.run_id, &node.reads_nodes)
        .await
        .map_err(|e| Outcome::Failed {
            error: format!("reading inputs: {e}"),
            retryable: true,
        })?;
    Ok(
        json!({ "input": input, "nodes": outputs, "run": { "id": &*task.run_id, "flow": &*task.flow } }),
    )
}

async fn start_child(inner: &Arc<Inner>, task: &ReadyTask, params: Value) -> Outcome {
    let p: SubflowParams = match serde_json::from_value(params) {
        Ok(p) => p,
        Err(e) => {
            return Outcome::Failed {
                error: format!("invalid params: {e}"),
                retryable: false,
            };
        }
    };
    match inner.resolve(&p.flow, p.version).await {
        Ok((flow, version)) => {
            let key = Some(format!(
                "parent:{}:{}:{}",
                task.run_id, task.node, task.attempt
            ));
            let parent = Some((task.run_id.to_string(), task.node.to_string()));
            let run = inner.new_run(flow, version, p.input, key, parent);
            // A key that does not render is rendered again (and falls back) at dispatch.
            let _ = inner.limits.note_run(&run);
            Outcome::StartChild(Box::new(run))
        }
        Err(e) => Outcome::Failed {
            error: format!("cannot start subflow: {e}"),
            retryable: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::guarded;

    #[tokio::test]
    async fn a_panicking_attempt_becomes_an_error_with_its_message() {
        let err = guarded(async {
            let v: Vec<u8> = Vec::new();
            #[allow(clippy::useless_vec)]
            v[3]
        })
        .await
        .unwrap_err();
        assert!(
            err.starts_with("node handler panicked: index out of bounds"),
            "{err}"
        );
        let err = guarded(async { panic!("boom {}", 7) }).await.unwrap_err();
        assert_eq!(err, "node handler panicked: boom 7");
        assert_eq!(guarded(async { 5 }).await, Ok(5));
    }
}
