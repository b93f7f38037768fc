//! Per-key concurrency limits and rate limits on starts, enforced where this process starts
//! attempts (docs/decisions/0009-keys-and-work-rate-limits.md).
//!
//! An attempt asks [`admit`] before it does anything visible. A task whose key is saturated
//! is parked in its key's FIFO list and gives its queue slot back, so a hot key never holds
//! more queue slots than its limit and the other keys' tasks keep flowing; when one of the
//! key's attempts ends, its slot passes straight to the oldest parked task, which goes back
//! to its queue. A task over a rate limit waits in its bucket's FIFO list (GCRA: starts are
//! spaced `per / limit` apart) until a timer admits it. Waiting uses no attempt: nothing is
//! written to the store, and the task is still `ready` there (a restart finds it again).
//!
//! A queue may have a rate limit too (`weft queue set NAME --rate 10/1s`): every task of the
//! queue then also passes the queue's bucket, `queue:NAME`, after its node's limits.
//!
//! In a cluster a key's slots and a bucket's starts are also taken in the store, so the
//! limits hold across the worker processes (see `shared`).
//!
//! Keys are rendered once per run, when the engine creates it ([`Limits::note_run`]); an
//! attempt of a run this process did not create (recovered, or created by another process)
//! renders its keys from the stored input once.

use crate::engine::{Inner, TaskId};
use crate::queue::Queue;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use state::{Pass, Rates, State, Step};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weft_core::limits::RenderedKeys;
use weft_core::time::Millis;
use weft_core::{CompiledFlow, CompiledNode};
use weft_store::ReadyTask;

mod admin;
mod keys;
mod report;
mod shared;
mod state;
pub(crate) use admin::load;
pub(crate) use shared::renew;

/// The keys of one run's limited nodes, by node name.
type RunKeys = Arc<[(Arc<str>, RenderedKeys)]>;

/// This process's limiter state.
pub(crate) struct Limits {
    /// Set once any flow with a limit is loaded, or any queue has a rate limit; until then
    /// attempts skip the limiter.
    enabled: AtomicBool,
    runs: RwLock<HashMap<Arc<str>, RunKeys>>,
    state: Mutex<State>,
    epoch: Instant,
}

/// A task, as the limiter reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRef {
    /// Run id.
    pub run_id: String,
    /// Node name.
    pub node: String,
}

/// Why a task that is ready does not start (for `weft run explain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LimitWait {
    /// Its concurrency key has no free slot.
    Concurrency {
        /// The rendered key.
        key: String,
        /// The limit in force.
        limit: u32,
        /// The attempts holding the key's slots.
        holders: Vec<TaskRef>,
    },
    /// Its rate limit admits no start before `until`.
    RateLimit {
        /// The bucket: the rendered key, `flow/node` for a node-wide limit, or `queue:NAME`
        /// for a queue's.
        bucket: String,
        /// When the bucket next admits a start (ms since the epoch); the task may wait
        /// longer if others are ahead of it.
        until: Millis,
        /// Tasks waiting on the bucket ahead of this one.
        ahead: usize,
    },
}

/// One concurrency key's state in this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    /// The rendered key.
    pub key: String,
    /// The limit in force (the override if there is one, else the flow's).
    pub limit: u32,
    /// The run-time override, if one is set.
    pub override_limit: Option<u32>,
    /// Attempts holding a slot.
    pub running: Vec<TaskRef>,
    /// Tasks parked until a slot frees.
    pub waiting: usize,
}

/// What an admitted attempt holds until it ends.
pub(crate) struct Held {
    key: Option<Arc<str>>,
}

impl Held {
    /// Frees the attempt's key slot (passing it to the key's oldest parked task).
    pub async fn release(self, inner: &Arc<Inner>, task: &ReadyTask) {
        if let Some(key) = self.key {
            shared::release(inner, &key, task).await;
            let woken = inner.limits.release(&key, &task_id(task));
            requeue(inner, woken);
        }
    }
}

fn task_id(t: &ReadyTask) -> TaskId {
    (t.run_id.clone(), t.node.clone())
}

fn has_limits(n: &CompiledNode) -> bool {
    n.concurrency.is_some() || n.rate_limit.is_some()
}

/// Admits `task` or parks it. `None`: parked (its queue slot and in-flight count are given
/// back here; it comes back through its queue once admitted).
///
/// The steps, in order: a slot of the node's concurrency key, a start of the node's rate
/// bucket, a start of the queue's rate bucket. In a cluster each step is also taken in the
/// store once this process grants it, so the limits hold across the worker processes.
///
/// `flow` is the task's flow as the attempt loaded it, before this call: loading it (a
/// cache hit but for its first task here) switches the limiter on if the flow has limits,
/// so a process that did not apply or create the flow (a recovered task, a cluster's other
/// worker) learns of its limits before the first start. `None`: it could not be loaded,
/// and the attempt reports that.
pub(crate) async fn admit(
    inner: &Arc<Inner>,
    queue: &Queue,
    task: &ReadyTask,
    flow: Option<&Arc<CompiledFlow>>,
) -> Option<Held> {
    let free = Held { key: None };
    let Some(flow) = flow else {
        return Some(free);
    };
    if !inner.limits.enabled.load(Ordering::Relaxed) {
        return Some(free);
    }
    let queue_interval = queue.rate_interval_us();
    let node = flow.node(&task.node).filter(|n| has_limits(n));
    if node.is_none() && queue_interval == 0 {
        return Some(free);
    }
    let keys = match node {
        Some(n) => inner.limits.keys_of(inner, flow, n, task).await,
        None => RenderedKeys::default(),
    };
    let rates = Rates {
        node: node.and_then(|n| n.rate_limit.as_ref()).map(|rl| {
            let bucket = keys
                .rate
                .clone()
                .unwrap_or_else(|| Arc::from(format!("{}/{}", task.flow, task.node)));
            (bucket, rl.emission_interval_us())
        }),
        queue: (queue_interval > 0).then(|| (queue.rate_bucket.clone(), queue_interval)),
        shared: inner.config.cluster.is_some(),
    };
    // What the task was granted before it came back through its queue; taken under the
    // same lock as the first step, so a plain admission locks the limiter once.
    let mut pass: Option<Pass> = None;
    loop {
        let now = inner.limits.now_us();
        let step = {
            let mut st = inner.limits.state.lock();
            let p = match &mut pass {
                Some(p) => p,
                None => pass.insert(st.passes.remove(&task_id(task)).unwrap_or_default()),
            };
            st.step((task, node, &keys), &rates, now, p)
        };
        match step {
            Step::Go => {
                return Some(Held {
                    key: pass.and_then(|p| p.slot),
                });
            }
            Step::Parked(arm) => {
                if let Some((bucket, at)) = arm {
                    arm_timer(inner, bucket, at);
                }
                give_back(inner, queue, task);
                return None;
            }
            Step::Key(key) => {
                if shared::acquire(inner, node, &key, task).await {
                    if let Some(p) = pass.as_mut() {
                        p.slot_shared = true;
                    }
                    continue;
                }
                // Full across the cluster: wait at the head of the key's line.
                inner.limits.state.lock().unhold(&key, task);
                shared::retry_later(inner, key);
                give_back(inner, queue, task);
                return None;
            }
            Step::Rate(bucket, interval, bit) => {
                let Some(wait) = shared::take(inner, &bucket, interval).await else {
                    if let Some(p) = pass.as_mut() {
                        p.done |= bit;
                    }
                    continue;
                };
                // Another process took the start: wait first in line until the cluster's
                // bucket allows the next, keeping what was granted so far.
                let at = inner.limits.now_us() + wait;
                let arm = inner.limits.state.lock().defer(
                    task,
                    &bucket,
                    interval,
                    at,
                    pass.take().unwrap_or_default(),
                );
                if let Some((bucket, at)) = arm {
                    arm_timer(inner, bucket, at);
                }
                give_back(inner, queue, task);
                return None;
            }
        }
    }
}

/// Gives a parked task's queue slot and in-flight count back.
fn give_back(inner: &Inner, queue: &Queue, task: &ReadyTask) {
    inner
        .inflight
        .lock()
        .remove(&(task.run_id.clone(), task.node.clone()));
    if inner.inflight_count.fetch_sub(1, Ordering::SeqCst) == 1 {
        inner.idle.notify_waiters();
    }
    queue.release();
}

fn requeue(inner: &Arc<Inner>, tasks: Vec<ReadyTask>) {
    for t in tasks {
        inner.queue(&t.queue).push([t]);
    }
}

fn arm_timer(inner: &Arc<Inner>, bucket: Arc<str>, at: u64) {
    let inner = inner.clone();
    tokio::spawn(async move {
        let mut at = at;
        loop {
            let when = inner.limits.epoch + Duration::from_micros(at);
            tokio::select! {
                _ = tokio::time::sleep_until(when.into()) => {}
                _ = inner.stopping.cancelled() => return,
            }
            let now = inner.limits.now_us();
            let (admitted, again) = inner.limits.state.lock().fire(&bucket, now);
            requeue(&inner, admitted);
            match again {
                Some(next) => at = next,
                None => return,
            }
        }
    });
}

impl Limits {
    pub fn new() -> Self {
        Self {
            enabled: AtomicBool::new(false),
            runs: RwLock::new(HashMap::new()),
            state: Mutex::new(State::default()),
            epoch: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Switches the limiter on for good (a queue got a rate limit).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Notes that `flow` is in use: the limiter switches on for good once a flow with a
    /// limit appears.
    pub fn note_flow(&self, flow: &CompiledFlow) {
        if flow.nodes.iter().any(has_limits) {
            self.enabled.store(true, Ordering::Relaxed);
        }
    }

    fn release(&self, key: &Arc<str>, id: &TaskId) -> Vec<ReadyTask> {
        self.state.lock().release(key, id)
    }

    /// Drops the parked tasks of cancelled runs and frees the slots their queued tasks held.
    pub fn remove_runs(&self, inner: &Arc<Inner>, runs: &HashSet<&str>) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut st = self.state.lock();
        for slots in st.keys.values_mut() {
            slots.parked.retain(|t| !runs.contains(&*t.run_id));
        }
        for b in st.buckets.values_mut() {
            b.waiting.retain(|t| !runs.contains(&*t.run_id));
        }
        st.waiting.retain(|(run, _), _| !runs.contains(&**run));
        let held: Vec<(TaskId, Arc<str>, bool)> = st
            .passes
            .iter()
            .filter(|((run, _), _)| runs.contains(&**run))
            .filter_map(|(id, p)| p.slot.clone().map(|k| (id.clone(), k, p.slot_shared)))
            .collect();
        st.passes.retain(|(run, _), _| !runs.contains(&**run));
        let mut woken = Vec::new();
        let mut shared_holds = Vec::new();
        for (id, key, in_store) in held {
            woken.extend(st.release(&key, &id));
            if in_store {
                shared_holds.push((key, id));
            }
        }
        drop(st);
        // A task waiting on a rate limit keeps its key's slot in the store, renewed by the
        // heartbeat: give it back, or it would stay taken.
        shared::release_all(inner, shared_holds);
        requeue(inner, woken);
    }

    /// A queue's rate limit changed (or was removed): the tasks waiting on its bucket are
    /// judged again at once under the new limit (they go back to their queue, keeping what
    /// they were granted), rather than at the time the old limit gave them.
    pub fn rate_changed(&self, inner: &Arc<Inner>, bucket: &Arc<str>, interval: Option<u64>) {
        let mut st = self.state.lock();
        let now = self.now_us();
        let Some(b) = st.buckets.get_mut(bucket) else {
            return;
        };
        let waiting: Vec<ReadyTask> = b.waiting.drain(..).collect();
        match interval {
            Some(i) => b.reset(now, i),
            None => {
                st.buckets.remove(bucket);
            }
        }
        for t in &waiting {
            st.waiting.remove(&task_id(t));
        }
        drop(st);
        requeue(inner, waiting);
    }

    /// Sets (or, with `None`, clears) the run-time limit of concurrency key `key`; parked
    /// tasks start at once if it grew.
    pub fn set_override(&self, inner: &Arc<Inner>, key: &str, limit: Option<u32>) {
        let key: Arc<str> = Arc::from(key);
        let mut st = self.state.lock();
        match limit {
            Some(l) => st.overrides.insert(key.clone(), l),
            None => st.overrides.remove(&key),
        };
        let woken = st.fill(&key);
        drop(st);
        requeue(inner, woken);
    }

    /// Tasks parked here that have not started (handed back to the store at shutdown).
    pub fn drain(&self) -> Vec<ReadyTask> {
        let mut st = self.state.lock();
        let mut out: Vec<ReadyTask> = Vec::new();
        for slots in st.keys.values_mut() {
            out.extend(slots.parked.drain(..));
        }
        for b in st.buckets.values_mut() {
            out.extend(b.waiting.drain(..));
        }
        st.waiting.clear();
        out
    }
}
