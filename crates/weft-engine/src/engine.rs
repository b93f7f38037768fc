//! The engine's front door: everything the API and the CLI can ask of weft.

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::events::{self, Event, EventFilter, EventLog, Subscription};
use crate::nodes::{EmailClient, HttpClient};
use crate::queue::{Queue, QueueStats};
use crate::{timer, worker};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use weft_core::nodes::NodeKind;
use weft_core::time::{Clock, Millis, SystemClock};
use weft_core::{CompiledFlow, FlowSpec, RunState, TaskState};
use weft_store::*;

/// A task by (run id, node name).
pub(crate) type TaskId = (Arc<str>, Arc<str>);

/// Shared engine state.
pub(crate) struct Inner {
    pub store: DynStore,
    pub config: EngineConfig,
    pub clock: Arc<dyn Clock>,
    pub http: HttpClient,
    /// The `email` node's SMTP connection pools.
    pub email: EmailClient,
    /// Circuit breakers and latencies of the targets this process's workers call.
    pub breakers: Arc<crate::nodes::breaker::Breakers>,
    flows: RwLock<HashMap<(String, u32), Arc<CompiledFlow>>>,
    /// Latest version per flow name, with when it was learned (see [`LATEST_TTL_MS`]).
    latest: RwLock<HashMap<String, (u32, Millis)>>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// Attempts running now, by (run, node): their start time and stop signal.
    pub inflight: Mutex<HashMap<TaskId, (Millis, CancellationToken)>>,
    pub inflight_count: AtomicUsize,
    pub idle: Notify,
    pub next_due: Mutex<Option<Millis>>,
    pub timer_wake: Notify,
    /// Stop taking new work.
    pub stopping: CancellationToken,
    /// Attempt results on their way to the store (see `worker::Completions`).
    pub completions: worker::Completions,
    events: broadcast::Sender<Event>,
    /// Live run and node events, for the API's streams.
    pub log: Arc<EventLog>,
    /// This process's worker identity (see `manage::WorkerInfo`).
    pub worker_id: String,
    /// When this engine started.
    pub started_at: Millis,
    /// True while this process holds the cluster's leader lease (see `cluster`).
    pub is_leader: AtomicBool,
    /// The leader loop, awaited by shutdown (see `cluster::stopped`).
    pub leader_loop: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Per-key concurrency and rate limits (see `limits`).
    pub limits: crate::limits::Limits,
    /// Wakes the schedule duty after a schedule changed (see `schedules`).
    pub schedule_wake: Notify,
    /// Each schedule fire pass's committed ticks (see `Engine::schedules_fired`).
    pub schedule_fired: broadcast::Sender<Arc<crate::schedules::SchedulesFired>>,
}

/// A handle to a running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// Result of applying a flow document.
#[derive(Debug, Clone, Serialize)]
pub struct FlowApplied {
    /// Flow name.
    pub name: String,
    /// The version now current.
    pub version: u32,
    /// False when the document equals the latest version (nothing new stored).
    pub created: bool,
}

/// A request to start a run.
#[derive(Debug, Clone, Default)]
pub struct StartRun {
    /// Flow name.
    pub flow: String,
    /// Version (default: latest).
    pub version: Option<u32>,
    /// Input.
    pub input: Value,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// When the run may start (a delayed run); `None` or a past time: at once.
    pub start: Option<RunStart>,
}

/// When a delayed run may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStart {
    /// At this time.
    At(Millis),
    /// This long after it is accepted.
    After(Duration),
}

impl RunStart {
    /// The start time, for a run accepted at `now`.
    pub fn time(self, now: Millis) -> Millis {
        match self {
            RunStart::At(t) => t,
            RunStart::After(d) => now.saturating_add(d.as_millis().min(i64::MAX as u128) as Millis),
        }
    }
}

/// A run with per-node state, as shown to users.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// The run.
    #[serde(flatten)]
    pub run: RunRecord,
    /// Its nodes, in flow order.
    pub nodes: Vec<TaskView>,
}

/// One node of a run, as shown to users.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// The stored task.
    #[serde(flatten)]
    pub task: TaskRecord,
    /// For a running attempt: when it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Millis>,
}

/// A node type in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    /// Type name.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What it does.
    pub description: &'static str,
    /// JSON Schema of its `params`.
    pub params: Value,
}

impl Inner {
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    pub fn merge_due(&self, due: Millis) {
        let mut d = self.next_due.lock();
        if d.is_none_or(|cur| due < cur) {
            *d = Some(due);
            drop(d);
            self.timer_wake.notify_one();
        }
    }

    pub fn queue(self: &Arc<Self>, name: &str) -> Arc<Queue> {
        if let Some(q) = self.queues.read().get(name) {
            return q.clone();
        }
        let mut qs = self.queues.write();
        if let Some(q) = qs.get(name) {
            return q.clone();
        }
        let limit = self
            .config
            .queues
            .get(name)
            .copied()
            .unwrap_or(self.config.default_concurrency);
        let q = Arc::new(Queue::new(name, limit, false));
        qs.insert(name.to_string(), q.clone());
        if self.config.run_workers && self.serves(name) {
            tokio::spawn(worker::dispatch(self.clone(), q.clone()));
        }
        q
    }

    /// Queue `name` if this process knows it (unlike [`Inner::queue`], never creates it).
    pub fn known_queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    /// Every queue this process knows, with its current figures, by name.
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        let mut v: Vec<QueueStats> = self.queues.read().values().map(|q| q.stats()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Whether this process's workers take tasks of queue `name`.
    pub fn serves(&self, name: &str) -> bool {
        self.config.run_workers
            && self.config.cluster.as_ref().is_none_or(|c| {
                c.worker_queues.is_empty() || c.worker_queues.iter().any(|q| q == name)
            })
    }

    /// Takes every claimed task that has not started out of this process's queues.
    pub fn drain_unstarted(&self) -> Vec<ReadyTask> {
        self.queues
            .read()
            .values()
            .flat_map(|q| q.drain())
            .chain(self.limits.drain())
            .collect()
    }

    /// Wakes the dispatcher of every queue this process knows and serves.
    pub fn wake_served(&self) {
        for (name, q) in self.queues.read().iter() {
            if self.serves(name) {
                q.wake.notify_one();
            }
        }
    }

    /// Acts on what a committed write changed.
    pub fn apply(self: &Arc<Self>, mut fx: Effects) {
        crate::health::task_changes(&fx.changes);
        // Published before the ready tasks reach their queues, so a node's `ready` event
        // always precedes its `running` event.
        if !fx.changes.is_empty() || !fx.ready.is_empty() {
            let mut out = Vec::with_capacity(fx.changes.len() + fx.ready.len());
            let changes = std::mem::take(&mut fx.changes);
            events::from_effects(changes, &fx.ready, self.now(), &mut out);
            self.log.publish(out);
        }
        if !fx.cancelled.is_empty() {
            let runs: HashSet<&str> = fx.cancelled.iter().map(String::as_str).collect();
            for q in self.queues.read().values() {
                q.remove_runs(&runs);
            }
            self.limits.remove_runs(self, &runs);
            for ((run, _), (_, token)) in self.inflight.lock().iter() {
                if runs.contains(&**run) {
                    token.cancel();
                }
            }
        }
        if !fx.ready.is_empty() && self.config.cluster.is_some() {
            // In a cluster ready tasks stay in the store until a worker claims them; the
            // local dispatchers and, through the store, other processes' workers are told
            // to look now rather than at their next poll.
            let names: HashSet<&str> = fx.ready.iter().map(|t| &*t.queue).collect();
            for &name in &names {
                if self.serves(name) {
                    self.queue(name).wake.notify_one();
                }
            }
            self.store
                .announce_ready(&names.into_iter().collect::<Vec<_>>());
        } else if fx.ready.iter().all(|t| t.queue == fx.ready[0].queue) {
            // One queue (a burst of schedule ticks, say): handed over as it came, with no copy.
            if let Some(first) = fx.ready.first() {
                self.queue(&first.queue).push(fx.ready);
            }
        } else {
            let mut by_queue: HashMap<Arc<str>, Vec<ReadyTask>> = HashMap::new();
            for t in fx.ready {
                by_queue.entry(t.queue.clone()).or_default().push(t);
            }
            for (name, tasks) in by_queue {
                self.queue(&name).push(tasks);
            }
        }
        if let Some(due) = fx.next_due {
            self.merge_due(due);
        }
        for f in fx.finished {
            crate::health::run_finished(&f);
            self.limits.forget_run(&f.id);
            let _ = self.events.send(Event::RunFinished {
                run_id: f.id,
                flow: f.flow,
                state: f.state,
                created_at: f.created_at,
                finished_at: f.finished_at,
            });
        }
    }

    pub async fn flow(&self, name: &str, version: u32) -> Result<Arc<CompiledFlow>, EngineError> {
        if let Some(f) = self.flows.read().get(&(name.to_string(), version)) {
            return Ok(f.clone());
        }
        let rec = self
            .store
            .flow_get(name, Some(version))
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("flow {name} version {version}")))?;
        let compiled = Arc::new(
            weft_core::compile(&rec.spec)
                .map_err(|e| EngineError::Internal(format!("stored flow {name}: {e}")))?,
        );
        self.limits.note_flow(&compiled);
        self.flows
            .write()
            .insert((name.to_string(), version), compiled.clone());
        Ok(compiled)
    }

    /// Resolves a flow name and optional version to a compiled flow.
    pub async fn resolve(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<(Arc<CompiledFlow>, u32), EngineError> {
        let version = match version {
            Some(v) => v,
            None => self.latest_version(name).await?,
        };
        Ok((self.flow(name, version).await?, version))
    }

    /// The latest version of a flow, from a short-lived cache: starting a run must not
    /// cost a store read, and a version applied through another process is picked up
    /// within [`LATEST_TTL_MS`].
    async fn latest_version(&self, name: &str) -> Result<u32, EngineError> {
        let now = self.now();
        if let Some(&(v, seen)) = self.latest.read().get(name)
            && now - seen < LATEST_TTL_MS
        {
            return Ok(v);
        }
        let rec = self.store.flow_get(name, None).await?;
        let version = rec
            .ok_or_else(|| EngineError::NotFound(format!("flow {name}")))?
            .version;
        self.note_latest(name, version);
        Ok(version)
    }

    /// Drops every cached version of a deleted flow.
    pub fn forget_flow(&self, name: &str) {
        self.flows.write().retain(|(n, _), _| n != name);
        self.latest.write().remove(name);
    }

    pub fn note_latest(&self, name: &str, version: u32) {
        let now = self.now();
        let mut latest = self.latest.write();
        let entry = latest.entry(name.to_string()).or_insert((version, now));
        if version >= entry.0 {
            *entry = (version, now);
        }
    }

    pub fn new_run(
        &self,
        flow: Arc<CompiledFlow>,
        version: u32,
        input: Value,
        key: Option<String>,
        parent: Option<(String, String)>,
    ) -> NewRun {
        NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            flow,
            version,
            input,
            idempotency_key: key,
            parent,
            created_at: self.now(),
            start_at: None,
        }
    }
}

/// How long a cached "latest version" of a flow is trusted before it is read again.
pub const LATEST_TTL_MS: Millis = 1000;

/// Largest accepted run input, in bytes of JSON.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Furthest ahead a run may be scheduled to start.
pub const MAX_START_DELAY_MS: Millis = 366 * 86_400_000;
/// Longest accepted idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

impl Engine {
    /// Starts an engine over `store`: recovers ready work, starts the timer and, if this
    /// process runs workers, the per-queue dispatchers.
    pub async fn start(store: DynStore, config: EngineConfig) -> Result<Engine, EngineError> {
        Self::start_with_clock(store, config, Arc::new(SystemClock)).await
    }

    /// [`Engine::start`] with an injected clock.
    pub async fn start_with_clock(
        store: DynStore,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, EngineError> {
        let started_at = clock.now_ms();
        let (events, _) = broadcast::channel(65_536);
        let (completions, completion_lanes) = worker::Completions::new(config.completion_lanes);
        let log = Arc::new(EventLog::new(config.event_buffer));
        let config_node_id = config.cluster.as_ref().map(|c| c.node_id.clone());
        let inner = Arc::new(Inner {
            http: HttpClient::new(config.http_connect_timeout, config.http_pool_idle_per_host),
            email: EmailClient::new(config.email.clone()),
            breakers: Default::default(),
            store,
            config,
            clock,
            flows: RwLock::new(HashMap::new()),
            latest: RwLock::new(HashMap::new()),
            queues: RwLock::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            inflight_count: AtomicUsize::new(0),
            idle: Notify::new(),
            next_due: Mutex::new(None),
            timer_wake: Notify::new(),
            stopping: CancellationToken::new(),
            completions,
            events,
            log,
            worker_id: config_node_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            started_at,
            is_leader: AtomicBool::new(false),
            leader_loop: Mutex::new(None),
            limits: crate::limits::Limits::new(),
            schedule_wake: Notify::new(),
            schedule_fired: broadcast::channel(1024).0,
        });
        for q in inner.store.queue_list().await? {
            inner
                .queue(&q.name)
                .configure(Some(q.concurrency), Some(q.paused));
            crate::queue_admin::apply_rate(&inner, &q.name, q.rate);
        }
        for (name, &limit) in &inner.config.queues {
            inner.queue(name).configure(Some(limit), None);
        }
        for (name, &rate) in &inner.config.queue_rates {
            crate::queue_admin::apply_rate(&inner, name, Some(rate));
        }
        crate::limits::load(&inner).await?;
        if inner.config.cluster.is_none() {
            // Sole owner of the store: what a previous process left ready or running is
            // this process's to run. (In a cluster, claims and the leader's reaper do it.)
            let fx = inner.store.task_recover().await?;
            inner.apply(fx);
        }
        crate::cluster::start(&inner);
        if inner.config.cluster.is_some() && inner.config.run_workers {
            tokio::spawn(worker::wake_on_announcements(inner.clone()));
        }
        // A gateway-only cluster process leaves timers to the orchestrators.
        if inner.config.cluster.as_ref().is_none_or(|c| c.orchestrator) {
            tokio::spawn(timer::run(inner.clone()));
            tokio::spawn(crate::retention::duty(inner.clone()));
            tokio::spawn(crate::sweeper::duty(inner.clone()));
            tokio::spawn(crate::schedules::duty(inner.clone()));
        }
        for lane in completion_lanes {
            tokio::spawn(worker::completer(inner.clone(), lane));
        }
        Ok(Engine { inner })
    }

    /// Applies a flow document (YAML or JSON text).
    pub async fn flow_apply(&self, text: &str) -> Result<FlowApplied, EngineError> {
        let spec = weft_core::parse_flow(text)?;
        self.flow_apply_spec(spec).await
    }

    /// Applies a parsed flow.
    pub async fn flow_apply_spec(&self, spec: FlowSpec) -> Result<FlowApplied, EngineError> {
        weft_core::compile(&spec)?;
        let (rec, created) = self.inner.store.flow_put(&spec).await?;
        self.inner.note_latest(&rec.name, rec.version);
        Ok(FlowApplied {
            name: rec.name,
            version: rec.version,
            created,
        })
    }

    /// A flow version (latest by default).
    pub async fn flow_get(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<FlowRecord, EngineError> {
        self.inner
            .store
            .flow_get(name, version)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("flow {name}")))
    }

    /// The latest version of every flow.
    pub async fn flow_list(&self) -> Result<Vec<FlowRecord>, EngineError> {
        Ok(self.inner.store.flow_list().await?)
    }

    fn check_start(req: &StartRun, now: Millis) -> Result<(), EngineError> {
        let size = serde_json::to_vec(&req.input).map(|v| v.len()).unwrap_or(0);
        if size > MAX_INPUT_BYTES {
            return Err(EngineError::BadRequest(format!(
                "input is {size} bytes; at most {MAX_INPUT_BYTES} are allowed"
            )));
        }
        if let Some(k) = &req.idempotency_key
            && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY)
        {
            return Err(EngineError::BadRequest(format!(
                "idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
            )));
        }
        if let Some(at) = req.start.map(|s| s.time(now))
            && at > now + MAX_START_DELAY_MS
        {
            return Err(EngineError::BadRequest(format!(
                "start time {} is more than {} days ahead",
                weft_core::time::rfc3339(at),
                MAX_START_DELAY_MS / 86_400_000
            )));
        }
        Ok(())
    }

    /// Starts a run, or returns the existing run for a repeated idempotency key.
    pub async fn run_start(&self, req: StartRun) -> Result<RunCreated, EngineError> {
        let mut out = self.run_start_many(vec![req]).await?;
        out.pop()
            .ok_or_else(|| EngineError::Internal("no run created".into()))?
    }

    /// Starts many runs in one commit; each entry gets its own result.
    pub async fn run_start_many(
        &self,
        reqs: Vec<StartRun>,
    ) -> Result<Vec<Result<RunCreated, EngineError>>, EngineError> {
        if self.inner.stopping.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let mut results: Vec<Option<Result<RunCreated, EngineError>>> =
            Vec::with_capacity(reqs.len());
        let mut new_runs = Vec::new();
        let mut positions = Vec::new();
        let mut resolved: HashMap<(String, Option<u32>), (Arc<CompiledFlow>, u32)> = HashMap::new();
        for (i, req) in reqs.into_iter().enumerate() {
            if let Err(e) = Self::check_start(&req, self.inner.now()) {
                results.push(Some(Err(e)));
                continue;
            }
            let key = (req.flow.clone(), req.version);
            let flow = match resolved.get(&key) {
                Some(f) => Ok(f.clone()),
                None => self
                    .inner
                    .resolve(&req.flow, req.version)
                    .await
                    .inspect(|f| {
                        resolved.insert(key, f.clone());
                    }),
            };
            match flow {
                Ok((flow, version)) => {
                    let mut run =
                        self.inner
                            .new_run(flow, version, req.input, req.idempotency_key, None);
                    run.start_at = req.start.map(|s| s.time(run.created_at));
                    if let Err(e) = self.inner.limits.note_run(&run) {
                        results.push(Some(Err(EngineError::BadRequest(e))));
                        continue;
                    }
                    new_runs.push(run);
                    positions.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !new_runs.is_empty() {
            let flows: Vec<Arc<str>> = new_runs.iter().map(|r| r.flow.name().into()).collect();
            let ids: Vec<String> = new_runs.iter().map(|r| r.id.clone()).collect();
            let began = std::time::Instant::now();
            let (created, fx) = self.inner.store.run_create(new_runs).await?;
            crate::health::store_op("run_create", began);
            crate::health::runs_started(&flows, &created);
            self.inner.apply(fx);
            for ((pos, c), id) in positions.into_iter().zip(created).zip(ids) {
                if !c.created {
                    self.inner.limits.forget_run(&id);
                }
                results[pos] = Some(Ok(c));
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(EngineError::Internal("missing result".into()))))
            .collect())
    }

    /// A run with its nodes; running attempts show as `running`.
    pub async fn run_get(&self, id: &str) -> Result<RunView, EngineError> {
        let began = std::time::Instant::now();
        let detail = self.inner.store.run_get(id).await;
        crate::health::store_op("run_get", began);
        let detail = detail?.ok_or_else(|| EngineError::NotFound(format!("run {id}")))?;
        let inflight = self.inner.inflight.lock();
        let mut any_running = false;
        let nodes = detail
            .tasks
            .into_iter()
            .map(|mut task| {
                let started = inflight
                    .get(&(Arc::from(id), Arc::from(task.node.as_str())))
                    .map(|(s, _)| *s);
                if started.is_some() && task.state == TaskState::Ready {
                    task.state = TaskState::Running;
                    any_running = true;
                }
                TaskView {
                    task,
                    started_at: started,
                }
            })
            .collect();
        drop(inflight);
        let mut run = detail.run;
        if any_running && run.state == RunState::Queued {
            run.state = RunState::Running;
        }
        Ok(RunView { run, nodes })
    }

    /// Runs matching a filter, newest first.
    pub async fn run_list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.inner.store.run_list(filter).await?)
    }

    /// Cancels a run; its running attempts are told to stop.
    pub async fn run_cancel(&self, id: &str) -> Result<(), EngineError> {
        let fx = self.inner.store.run_cancel(id).await?;
        self.inner.apply(fx);
        Ok(())
    }

    /// Dead-lettered tasks.
    pub async fn dlq_list(&self, filter: &DlqFilter) -> Result<Vec<DeadTask>, EngineError> {
        Ok(self.inner.store.dlq_list(filter).await?)
    }

    /// Replays a dead task; its run continues from that node.
    pub async fn dlq_replay(&self, run_id: &str, node: &str) -> Result<(), EngineError> {
        let fx = self.inner.store.dlq_replay(run_id, node).await?;
        self.inner.apply(fx);
        Ok(())
    }

    /// Every queue with its live figures.
    pub fn queue_list(&self) -> Vec<QueueStats> {
        self.inner.queue_stats()
    }

    /// The node catalog.
    pub fn catalog() -> Vec<CatalogEntry> {
        NodeKind::ALL
            .iter()
            .map(|k| CatalogEntry {
                kind: k.as_str(),
                description: k.description(),
                params: k.params_schema(),
            })
            .collect()
    }

    /// Subscribes to run events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// This process's live event log.
    pub fn event_log(&self) -> &Arc<EventLog> {
        &self.inner.log
    }

    /// Subscribes to live events matching `filter`: from now on (`after` = None), or every
    /// retained event after seq `after`, then live. A subscriber that leaves more than the
    /// configured lag unread is told it lagged.
    pub fn watch(&self, after: Option<u64>, filter: EventFilter) -> Subscription {
        self.inner
            .log
            .subscribe(after, filter, self.inner.config.event_subscriber_lag)
    }

    /// Attempts running in this process now.
    pub fn inflight(&self) -> usize {
        self.inner.inflight_count.load(Ordering::SeqCst)
    }

    /// Waits until run `id` is terminal and returns it.
    pub async fn wait_run(&self, id: &str) -> Result<RunView, EngineError> {
        let mut events = self.subscribe();
        loop {
            let view = self.run_get(id).await?;
            if view.run.state.is_terminal() {
                return Ok(view);
            }
            // Poll too: a lagging subscriber must not wait forever.
            let _ = tokio::time::timeout(Duration::from_millis(250), async {
                while let Ok(ev) = events.recv().await {
                    let Event::RunFinished { run_id, .. } = ev;
                    if run_id == id {
                        return;
                    }
                }
            })
            .await;
        }
    }

    /// Stops taking work, waits up to `grace` for running attempts and their commits, and
    /// leaves anything still running to be re-run by the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.cancel();
        for q in self.inner.queues.read().values() {
            q.wake.notify_one();
        }
        crate::cluster::release_unstarted(&self.inner).await;
        let deadline = tokio::time::Instant::now() + grace;
        while self.inner.inflight_count.load(Ordering::SeqCst) > 0 {
            let notified = self.inner.idle.notified();
            if self.inner.inflight_count.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(
                    inflight = self.inner.inflight_count.load(Ordering::SeqCst),
                    "shutdown grace elapsed; in-flight attempts will re-run on next start"
                );
                break;
            }
        }
        // A claim that was on its way when shutdown began has landed by now.
        crate::cluster::release_unstarted(&self.inner).await;
        crate::cluster::stopped(&self.inner).await;
    }
}
