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
//! In a cluster a key's slots are also taken in the store, so the limit holds across the
//! worker processes (see `shared`).
//!
//! Keys are rendered once per run, when the engine creates it ([`Limits::note_run`]); an
//! attempt of a run this process did not create (recovered, or created by another process)
//! renders its keys from the stored input once.

use crate::engine::{Inner, TaskId};
use crate::queue::Queue;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weft_core::limits::{RenderedKeys, render_key};
use weft_core::time::Millis;
use weft_core::{CompiledFlow, CompiledNode};
use weft_store::{NewRun, ReadyTask};

mod admin;
mod shared;
pub(crate) use admin::load;
pub(crate) use shared::renew;

/// The keys of one run's limited nodes, by node name.
type RunKeys = Arc<[(Arc<str>, RenderedKeys)]>;

/// This process's limiter state.
pub(crate) struct Limits {
    /// Set once any flow with a limit is loaded; until then attempts skip the limiter.
    enabled: AtomicBool,
    runs: RwLock<HashMap<Arc<str>, RunKeys>>,
    state: Mutex<State>,
    epoch: Instant,
}

#[derive(Default)]
struct State {
    keys: HashMap<Arc<str>, KeySlots>,
    buckets: HashMap<Arc<str>, Bucket>,
    overrides: HashMap<Arc<str>, u32>,
    /// What a task sent back to its queue already holds.
    passes: HashMap<TaskId, Pass>,
    /// What each parked task waits for.
    waiting: HashMap<TaskId, Waiting>,
    admitted: u64,
}

#[derive(Default)]
struct KeySlots {
    /// The limit the flow gives (an override takes precedence).
    limit: u32,
    holders: HashSet<TaskId>,
    parked: VecDeque<ReadyTask>,
    /// A retry of the parked tasks after the cluster's key was full is pending.
    retry_armed: bool,
}

struct Bucket {
    /// Theoretical arrival time of the next start, µs since `epoch`.
    tat: u64,
    interval: u64,
    waiting: VecDeque<ReadyTask>,
    armed: bool,
}

#[derive(Default)]
struct Pass {
    slot: Option<Arc<str>>,
    rate: bool,
}

#[derive(Clone)]
enum Waiting {
    Key(Arc<str>),
    Rate(Arc<str>),
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
        /// The bucket: the rendered key, or `flow/node` for a node-wide limit.
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
pub(crate) async fn admit(inner: &Arc<Inner>, queue: &Queue, task: &ReadyTask) -> Option<Held> {
    let free = Held { key: None };
    if !inner.limits.enabled.load(Ordering::Relaxed) {
        return Some(free);
    }
    let Ok(flow) = inner.flow(&task.flow, task.version).await else {
        return Some(free); // the attempt reports that it cannot load the flow
    };
    let Some(node) = flow.node(&task.node).filter(|n| has_limits(n)) else {
        return Some(free);
    };
    let keys = inner.limits.keys_of(inner, &flow, node, task).await;
    let now = inner.limits.now_us();
    let decision = inner.limits.state.lock().admit(task, node, &keys, now);
    match decision {
        Decision::Go(Some(key)) if !shared::acquire(inner, node, &key, task).await => {
            // Full across the cluster: wait at the head of the key's line.
            inner.limits.state.lock().unhold(&key, task);
            shared::retry_later(inner, key);
            give_back(inner, queue, task);
            None
        }
        Decision::Go(key) => Some(Held { key }),
        Decision::Parked(arm) => {
            if let Some((bucket, at)) = arm {
                arm_timer(inner, bucket, at);
            }
            give_back(inner, queue, task);
            None
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

enum Decision {
    Go(Option<Arc<str>>),
    Parked(Option<(Arc<str>, u64)>),
}

impl State {
    fn admit(
        &mut self,
        task: &ReadyTask,
        node: &CompiledNode,
        keys: &RenderedKeys,
        now: u64,
    ) -> Decision {
        let id = task_id(task);
        let pass = self.passes.remove(&id).unwrap_or_default();
        let mut held = pass.slot;
        if held.is_none()
            && let (Some(kl), Some(key)) = (&node.concurrency, &keys.concurrency)
        {
            let limit = self.overrides.get(key).copied().unwrap_or(kl.limit);
            let slots = self.keys.entry(key.clone()).or_default();
            slots.limit = kl.limit;
            if slots.holders.len() as u32 >= limit {
                slots.parked.push_back(task.clone());
                self.waiting.insert(id, Waiting::Key(key.clone()));
                return Decision::Parked(None);
            }
            slots.holders.insert(id.clone());
            held = Some(key.clone());
        }
        if let Some(rl) = node.rate_limit.as_ref().filter(|_| !pass.rate) {
            let bucket_id = keys
                .rate
                .clone()
                .unwrap_or_else(|| Arc::from(format!("{}/{}", task.flow, task.node)));
            let interval = rl.emission_interval_us();
            let b = self.buckets.entry(bucket_id.clone()).or_insert(Bucket {
                tat: 0,
                interval,
                waiting: VecDeque::new(),
                armed: false,
            });
            b.interval = interval;
            if b.waiting.is_empty() && b.tat <= now {
                b.tat = now + interval;
            } else {
                b.waiting.push_back(task.clone());
                let arm = (!b.armed).then(|| {
                    b.armed = true;
                    (bucket_id.clone(), b.tat)
                });
                if held.is_some() {
                    self.passes.insert(
                        id.clone(),
                        Pass {
                            slot: held,
                            rate: false,
                        },
                    );
                }
                self.waiting.insert(id, Waiting::Rate(bucket_id));
                return Decision::Parked(arm);
            }
            self.admitted += 1;
            if self.admitted.is_multiple_of(4096) {
                self.buckets
                    .retain(|_, b| b.tat > now || !b.waiting.is_empty() || b.armed);
            }
        }
        Decision::Go(held)
    }

    /// Takes back the local slot of `task`, which found `key` full across the cluster, and
    /// parks it first in the key's line.
    fn unhold(&mut self, key: &Arc<str>, task: &ReadyTask) {
        let id = task_id(task);
        let slots = self.keys.entry(key.clone()).or_default();
        slots.holders.remove(&id);
        slots.parked.push_front(task.clone());
        self.waiting.insert(id, Waiting::Key(key.clone()));
    }

    /// Frees `id`'s slot of `key`; the tasks that now hold a slot.
    fn release(&mut self, key: &Arc<str>, id: &TaskId) -> Vec<ReadyTask> {
        let Some(slots) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        slots.holders.remove(id);
        let woken = self.fill(key);
        if let Some(slots) = self.keys.get(key)
            && slots.holders.is_empty()
            && slots.parked.is_empty()
        {
            self.keys.remove(key);
        }
        woken
    }

    /// Hands `key`'s free slots to its oldest parked tasks.
    fn fill(&mut self, key: &Arc<str>) -> Vec<ReadyTask> {
        let Some(slots) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        let limit = self.overrides.get(key).copied().unwrap_or(slots.limit);
        let mut woken = Vec::new();
        while (slots.holders.len() as u32) < limit {
            let Some(t) = slots.parked.pop_front() else {
                break;
            };
            let id = task_id(&t);
            slots.holders.insert(id.clone());
            self.waiting.remove(&id);
            self.passes.entry(id).or_default().slot = Some(key.clone());
            woken.push(t);
        }
        woken
    }

    /// Admits what `bucket` allows now; the tasks admitted, and when to look again.
    fn fire(&mut self, bucket: &Arc<str>, now: u64) -> (Vec<ReadyTask>, Option<u64>) {
        let Some(b) = self.buckets.get_mut(bucket) else {
            return (Vec::new(), None);
        };
        b.armed = false;
        let mut admitted = Vec::new();
        while b.tat <= now {
            let Some(t) = b.waiting.pop_front() else {
                break;
            };
            b.tat += b.interval;
            admitted.push(t);
        }
        let again = (!b.waiting.is_empty()).then(|| {
            b.armed = true;
            b.tat
        });
        for t in &admitted {
            let id = task_id(t);
            self.waiting.remove(&id);
            self.passes.entry(id).or_default().rate = true;
        }
        (admitted, again)
    }
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

    /// Notes that `flow` is in use: the limiter switches on for good once a flow with a
    /// limit appears.
    pub fn note_flow(&self, flow: &CompiledFlow) {
        if flow.nodes.iter().any(has_limits) {
            self.enabled.store(true, Ordering::Relaxed);
        }
    }

    /// Renders the keys of a run about to be created; an error names the key that cannot
    /// be rendered from this input.
    pub fn note_run(&self, run: &NewRun) -> Result<(), String> {
        let flow = &run.flow;
        if !flow.nodes.iter().any(has_limits) {
            return Ok(());
        }
        self.note_flow(flow);
        let ctx = context(&run.id, flow.name(), &run.input);
        let mut keys = Vec::new();
        for n in flow.nodes.iter().filter(|n| has_limits(n)) {
            let path = format!("nodes.{}", n.name);
            let rendered = render(n, &ctx)
                .map_err(|(field, e)| format!("input does not fit {path}.{field}.key: {e}"))?;
            keys.push((Arc::from(n.name.as_str()), rendered));
        }
        self.runs
            .write()
            .insert(Arc::from(run.id.as_str()), keys.into());
        Ok(())
    }

    /// Forgets a run's keys (it finished, or its create was a duplicate).
    pub fn forget_run(&self, id: &str) {
        if self.enabled.load(Ordering::Relaxed) {
            self.runs.write().remove(id);
        }
    }

    async fn keys_of(
        &self,
        inner: &Inner,
        flow: &CompiledFlow,
        node: &CompiledNode,
        task: &ReadyTask,
    ) -> RenderedKeys {
        let cached = self.runs.read().get(&*task.run_id).cloned();
        if let Some(keys) = cached
            && let Some((_, k)) = keys.iter().find(|(n, _)| **n == *task.node)
        {
            return k.clone();
        }
        // Not created here (or before a restart): render from the stored input. A key that
        // does not render (the input changed shape since) falls back to its template text,
        // so such tasks share one limit rather than escape it.
        let input = match inner.store.task_inputs(&task.run_id, &[]).await {
            Ok((input, _)) => input,
            Err(e) => {
                tracing::warn!(run = %task.run_id, error = %e, "reading input for limit keys");
                Value::Null
            }
        };
        let ctx = context(&task.run_id, flow.name(), &input);
        render(node, &ctx).unwrap_or_else(|(field, e)| {
            tracing::warn!(run = %task.run_id, node = %task.node, "{field}.key: {e}; using the unrendered key");
            RenderedKeys {
                concurrency: node.concurrency.as_ref().map(|c| Arc::from(c.key.as_str())),
                rate: node
                    .rate_limit
                    .as_ref()
                    .and_then(|r| r.key.as_deref().map(Arc::from)),
            }
        })
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
        let held: Vec<(TaskId, Arc<str>)> = st
            .passes
            .iter()
            .filter(|((run, _), _)| runs.contains(&**run))
            .filter_map(|(id, p)| p.slot.clone().map(|k| (id.clone(), k)))
            .collect();
        st.passes.retain(|(run, _), _| !runs.contains(&**run));
        let mut woken = Vec::new();
        for (id, key) in held {
            woken.extend(st.release(&key, &id));
        }
        drop(st);
        requeue(inner, woken);
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

    /// Why `run_id`'s task of `node` waits on a limit in this process, if it does.
    pub fn wait_of(&self, now: Millis, run_id: &str, node: &str) -> Option<LimitWait> {
        let st = self.state.lock();
        let id: TaskId = (Arc::from(run_id), Arc::from(node));
        Some(match st.waiting.get(&id)?.clone() {
            Waiting::Key(key) => {
                let slots = st.keys.get(&key)?;
                LimitWait::Concurrency {
                    key: key.to_string(),
                    limit: st.overrides.get(&key).copied().unwrap_or(slots.limit),
                    holders: refs(&slots.holders),
                }
            }
            Waiting::Rate(bucket) => {
                let b = st.buckets.get(&bucket)?;
                let ahead = b
                    .waiting
                    .iter()
                    .position(|t| &*t.run_id == run_id && &*t.node == node)
                    .unwrap_or(0);
                let wait_ms = b.tat.saturating_sub(self.now_us()).div_ceil(1000) as Millis;
                LimitWait::RateLimit {
                    bucket: bucket.to_string(),
                    until: now + wait_ms,
                    ahead,
                }
            }
        })
    }

    /// Every concurrency key in use or overridden, by key.
    pub fn usage(&self) -> Vec<KeyUsage> {
        let st = self.state.lock();
        let mut names: HashSet<&Arc<str>> = st.keys.keys().collect();
        names.extend(st.overrides.keys());
        let mut out: Vec<KeyUsage> = names
            .into_iter()
            .map(|k| {
                let slots = st.keys.get(k);
                let over = st.overrides.get(k).copied();
                KeyUsage {
                    key: k.to_string(),
                    limit: over.or(slots.map(|s| s.limit)).unwrap_or(0),
                    override_limit: over,
                    running: slots.map(|s| refs(&s.holders)).unwrap_or_default(),
                    waiting: slots.map_or(0, |s| s.parked.len()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
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

fn refs(ids: &HashSet<TaskId>) -> Vec<TaskRef> {
    let mut v: Vec<TaskRef> = ids
        .iter()
        .map(|(r, n)| TaskRef {
            run_id: r.to_string(),
            node: n.to_string(),
        })
        .collect();
    v.sort_by(|a, b| (&a.run_id, &a.node).cmp(&(&b.run_id, &b.node)));
    v
}

fn context(run_id: &str, flow: &str, input: &Value) -> Value {
    json!({ "input": input, "run": { "id": run_id, "flow": flow } })
}

fn render(n: &CompiledNode, ctx: &Value) -> Result<RenderedKeys, (&'static str, String)> {
    let concurrency = match &n.concurrency {
        Some(c) => Some(render_key(&c.key, ctx).map_err(|e| ("concurrency", e))?),
        None => None,
    };
    let rate = match n.rate_limit.as_ref().and_then(|r| r.key.as_ref()) {
        Some(k) => Some(render_key(k, ctx).map_err(|e| ("rate_limit", e))?),
        None => None,
    };
    Ok(RenderedKeys { concurrency, rate })
}
