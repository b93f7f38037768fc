//! weft's PostgreSQL store: the storage contract of `weft-store` on a shared database, so
//! several weft processes can work on one set of flows and runs.
//!
//! - **Client**: tokio-postgres over a bounded deadpool pool; every statement is prepared once
//!   per connection and cached.
//! - **Schema**: embedded numbered migrations ([`SCHEMA_VERSION`]) applied by
//!   [`PostgresStore::migrate`] under an advisory lock; all tables live in one schema
//!   ([`PgOptions::schema`]), selected through each connection's `search_path`.
//! - **History** (`runs`, `tasks`) is range-partitioned by day of the creation time encoded
//!   in the run's UUID v7 id, so lookups by id prune to one partition and retention drops
//!   whole partitions ([`PostgresStore::drop_partitions_older_than`]). See `partition`.
//! - **Writes** are one transaction per call, whatever the batch size: runs and tasks are
//!   inserted with `unnest` arrays, attempt results are applied set-wise (see `write`).
//!
//! DAG progress uses the same counters as the SQLite driver (docs/decisions/0003). Workers
//! sharing the database claim ready tasks with leases (`lease_owner`, `lease_until` on
//! `tasks`, claimed with `FOR UPDATE SKIP LOCKED`), and singleton duties are held through
//! leader leases (`leader_leases`); see `weft_store::ClaimStore`. Every process of a cluster
//! beats its row in `members` (see `weft_store::MemberStore`). Workers in other
//! processes hear of new ready tasks through LISTEN/NOTIFY (see `notify`).

mod conv;
mod limits;
mod migrate;
mod notify;
mod partition;
mod read;
#[cfg(feature = "testing")]
pub mod testing;
mod write;

use async_trait::async_trait;
use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use weft_core::time::{Clock, Millis, SystemClock};
use weft_core::{CompiledFlow, FlowSpec};
use weft_store::*;

pub use migrate::SCHEMA_VERSION;
pub use partition::DAY_MS;

/// Default number of pooled connections.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Default time allowed to open one connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a call waits for a free pooled connection.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default schema.
pub const DEFAULT_SCHEMA: &str = "public";

/// Options for connecting.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The schema holding weft's tables (default [`DEFAULT_SCHEMA`], `public`). A plain
    /// lowercase identifier: letters, digits and `_`, not starting with a digit.
    pub schema: Option<String>,
    /// Most connections open at once (default [`DEFAULT_POOL_SIZE`], 16).
    pub pool_size: usize,
    /// Time allowed to open one connection (default [`DEFAULT_CONNECT_TIMEOUT`], 5 s).
    pub connect_timeout: Duration,
    /// Time a call waits for a free connection before failing as unavailable (default
    /// [`DEFAULT_ACQUIRE_TIMEOUT`], 30 s).
    pub acquire_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    schema: String,
    /// Where the server is, for messages (never the password).
    endpoint: String,
    closed: AtomicBool,
    /// Compiled flow versions, by (name, version).
    flows: Mutex<HashMap<(String, u32), Arc<CompiledFlow>>>,
    /// Days whose partitions are known to exist.
    partitions: Mutex<HashSet<i64>>,
    clock: Box<dyn Clock>,
    /// Ready announcements to and from other processes.
    notifier: notify::Notifier,
}

/// Checks a schema name is a plain lowercase identifier (safe unquoted in SQL and options).
fn check_schema(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "invalid PostgreSQL schema name {name:?}: use lowercase letters, digits and _ (not starting with a digit, at most 63 characters)"
        ));
    }
    Ok(())
}

/// `host:port` of the first server in `cfg`, for messages.
fn endpoint(cfg: &tokio_postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a `key=value` string) and
    /// checks that a connection opens. It does not migrate: call [`Self::migrate`].
    pub async fn connect(url: &str, opts: PgOptions) -> Result<Arc<Self>, String> {
        let mut cfg = tokio_postgres::Config::from_str(url)
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        let schema = opts.schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_string());
        check_schema(&schema)?;
        if opts.pool_size == 0 {
            return Err("PostgreSQL pool_size must be at least 1".into());
        }
        let options = match cfg.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c search_path={schema}"),
            _ => format!("-c search_path={schema}"),
        };
        cfg.options(&options);
        if cfg.get_application_name().is_none() {
            cfg.application_name("weft");
        }
        cfg.connect_timeout(opts.connect_timeout);
        let endpoint = endpoint(&cfg);
        let listen_cfg = cfg.clone();
        let manager = Manager::from_config(
            cfg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size)
            .wait_timeout(Some(opts.acquire_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| format!("cannot set up the PostgreSQL pool: {e}"))?;
        let store = Arc::new(Self {
            pool: pool.clone(),
            schema: schema.clone(),
            endpoint,
            closed: AtomicBool::new(false),
            flows: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashSet::new()),
            clock: Box::new(SystemClock),
            notifier: notify::Notifier::new(&schema, pool.clone(), listen_cfg),
        });
        drop(store.pool.get().await.map_err(|e| store.connect_error(e))?);
        Ok(store)
    }

    fn connect_error(&self, e: deadpool_postgres::PoolError) -> String {
        let why = match e {
            deadpool_postgres::PoolError::Backend(e) => conv::describe(&e),
            deadpool_postgres::PoolError::Timeout(_) => "timed out".into(),
            other => other.to_string(),
        };
        format!("cannot connect to PostgreSQL at {}: {why}", self.endpoint)
    }

    /// Brings the schema up to [`SCHEMA_VERSION`] (creating the schema if needed). Safe to
    /// call from several processes at once; refuses a database from a newer weft.
    pub async fn migrate(&self) -> Result<(), String> {
        let mut client = self.pool.get().await.map_err(|e| self.connect_error(e))?;
        migrate::migrate(&mut client, &self.schema).await?;
        drop(client);
        // Today's and tomorrow's partitions exist before the first write, so a fresh
        // schema's first runs do not create them while workers are already claiming.
        self.ensure_partitions([self.now()]).await.map_err(|e| {
            format!(
                "cannot create today's partitions in schema {}: {e}",
                self.schema
            )
        })
    }

    /// Connections this store may hold at once: its pool, plus the one connection that
    /// listens for ready announcements.
    pub fn connections(&self) -> u32 {
        self.pool.status().max_size as u32 + 1
    }

    /// The schema this store uses.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The LISTEN/NOTIFY channel of this store's ready announcements (one per schema).
    pub fn ready_channel(&self) -> &str {
        self.notifier.channel()
    }

    /// A pooled connection, unless the store is closed.
    pub(crate) async fn client(&self) -> StoreResult<Client> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(conv::pool)
    }

    pub(crate) fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// A compiled flow version, from the cache or the `flows` table.
    pub(crate) async fn flow(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        name: &str,
        version: u32,
    ) -> StoreResult<Arc<CompiledFlow>> {
        if let Some(f) = self.flows.lock().get(&(name.to_string(), version)) {
            return Ok(f.clone());
        }
        let stmt = client
            .prepare_cached("SELECT spec FROM flows WHERE name = $1 AND version = $2")
            .await
            .map_err(conv::db)?;
        let row = client
            .query_opt(&stmt, &[&name, &(version as i32)])
            .await
            .map_err(conv::db)?
            .ok_or_else(|| StoreError::NotFound(format!("flow {name} version {version}")))?;
        let text: String = conv::col(&row, 0)?;
        let compiled = compile_stored(name, &text)?;
        self.flows
            .lock()
            .insert((name.to_string(), version), compiled.clone());
        Ok(compiled)
    }
}

#[async_trait]
impl FlowStore for PostgresStore {
    async fn flow_put(&self, spec: &FlowSpec) -> StoreResult<(FlowRecord, bool)> {
        write::flow_put(self, spec).await
    }
    async fn flow_get(&self, name: &str, version: Option<u32>) -> StoreResult<Option<FlowRecord>> {
        read::flow_get(&self.client().await?, name, version).await
    }
    async fn flow_list(&self) -> StoreResult<Vec<FlowRecord>> {
        read::flow_list(&self.client().await?).await
    }
    async fn flow_versions(&self, name: &str) -> StoreResult<Vec<FlowRecord>> {
        read::flow_versions(&self.client().await?, name).await
    }
    async fn flow_delete(&self, name: &str) -> StoreResult<u32> {
        write::flow_delete(self, name).await
    }
}

#[async_trait]
impl RunStore for PostgresStore {
    async fn run_create(&self, runs: Vec<NewRun>) -> StoreResult<(Vec<RunCreated>, Effects)> {
        write::run_create(self, runs).await
    }
    async fn run_get(&self, id: &str) -> StoreResult<Option<RunDetail>> {
        read::run_get(&self.client().await?, id).await
    }
    async fn run_list(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        read::run_list(&self.client().await?, filter).await
    }
    async fn run_cancel(&self, id: &str) -> StoreResult<Effects> {
        write::run_cancel(self, id).await
    }
    async fn run_inconsistencies(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<(Vec<Inconsistency>, Option<String>)> {
        read::run_inconsistencies(&self.client().await?, after, limit).await
    }
    async fn run_recount(&self, run_id: &str) -> StoreResult<Effects> {
        write::run_recount(self, run_id).await
    }
    async fn run_prune(&self, cutoff: Millis) -> StoreResult<Pruned> {
        self.drop_partitions_older_than(cutoff).await
    }
}

#[async_trait]
impl TaskStore for PostgresStore {
    async fn task_complete(&self, results: Vec<TaskResult>) -> StoreResult<Effects> {
        write::task_complete(self, results).await
    }
    async fn task_promote_due(&self, now: Millis) -> StoreResult<Effects> {
        write::promote_due(self, now).await
    }
    async fn task_recover(&self) -> StoreResult<Effects> {
        read::recover(&self.client().await?).await
    }
    async fn task_inputs(
        &self,
        run_id: &str,
        nodes: &[String],
    ) -> StoreResult<(Value, serde_json::Map<String, Value>)> {
        read::task_inputs(&self.client().await?, run_id, nodes).await
    }
}

#[async_trait]
impl ClaimStore for PostgresStore {
    async fn task_claim(
        &self,
        worker: &str,
        queue: &str,
        limit: u32,
        lease_until: Millis,
    ) -> StoreResult<Vec<ReadyTask>> {
        write::task_claim(self, worker, queue, limit, lease_until).await
    }
    async fn task_release(&self, worker: &str, tasks: &[ReadyTask]) -> StoreResult<u64> {
        write::task_release(self, worker, tasks).await
    }
    async fn task_heartbeat(
        &self,
        worker: &str,
        lease_until: Millis,
    ) -> StoreResult<Vec<(String, String)>> {
        write::task_heartbeat(self, worker, lease_until).await
    }
    async fn task_reap(&self, now: Millis) -> StoreResult<Effects> {
        write::task_reap(self, now).await
    }
    async fn leader_acquire(
        &self,
        duty: &str,
        holder: &str,
        now: Millis,
        ttl_ms: i64,
    ) -> StoreResult<bool> {
        write::leader_acquire(self, duty, holder, now, ttl_ms).await
    }
    async fn leader_release(&self, duty: &str, holder: &str) -> StoreResult<()> {
        write::leader_release(self, duty, holder).await
    }
    async fn leader_get(&self, duty: &str, now: Millis) -> StoreResult<Option<(String, Millis)>> {
        write::leader_get(self, duty, now).await
    }
    fn announce_ready(&self, queues: &[&str]) {
        self.notifier.announce(queues);
    }
    fn ready_announcements(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<str>>> {
        self.notifier.subscribe()
    }
}

#[async_trait]
impl MemberStore for PostgresStore {
    async fn member_beat(&self, member: &MemberRecord) -> StoreResult<()> {
        write::member_beat(self, member).await
    }
    async fn member_list(
        &self,
        now: Millis,
        stale_after_ms: i64,
    ) -> StoreResult<Vec<MemberRecord>> {
        write::member_list(self, now, stale_after_ms).await
    }
}

#[async_trait]
impl DlqStore for PostgresStore {
    async fn dlq_list(&self, filter: &DlqFilter) -> StoreResult<Vec<DeadTask>> {
        read::dlq_list(&self.client().await?, filter).await
    }
    async fn dlq_count(&self, filter: &DlqFilter) -> StoreResult<u64> {
        read::dlq_count(&self.client().await?, filter).await
    }
    async fn dlq_replay(&self, run_id: &str, node: &str) -> StoreResult<Effects> {
        write::dlq_replay(self, run_id, node).await
    }
    async fn dlq_discard(&self, run_id: &str, node: &str) -> StoreResult<()> {
        write::dlq_discard(self, run_id, node).await
    }
}

#[async_trait]
impl QueueStore for PostgresStore {
    async fn queue_list(&self) -> StoreResult<Vec<QueueSettings>> {
        read::queue_list(&self.client().await?).await
    }
    async fn queue_put(&self, settings: &QueueSettings) -> StoreResult<()> {
        write::queue_put(&self.client().await?, settings).await
    }
}

#[async_trait]
impl ApiKeyStore for PostgresStore {
    async fn apikey_create(&self, key: &NewApiKey) -> StoreResult<ApiKeyRecord> {
        write::apikey_create(&self.client().await?, key).await
    }
    async fn apikey_list(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        read::apikey_list(&self.client().await?).await
    }
    async fn apikey_revoke(&self, id: &str, at: Millis) -> StoreResult<ApiKeyRecord> {
        write::apikey_revoke(&self.client().await?, id, at).await
    }
}

#[async_trait]
impl ScheduleStore for PostgresStore {
    async fn schedule_put(
        &self,
        spec: &weft_core::schedule::ScheduleSpec,
        now: Millis,
    ) -> StoreResult<(ScheduleRecord, bool)> {
        write::schedules::schedule_put(self, spec, now).await
    }
    async fn schedule_get(&self, name: &str) -> StoreResult<Option<ScheduleRecord>> {
        write::schedules::schedule_get(&self.client().await?, name).await
    }
    async fn schedule_list(&self) -> StoreResult<Vec<ScheduleRecord>> {
        write::schedules::schedule_list(&self.client().await?).await
    }
    async fn schedule_delete(&self, name: &str) -> StoreResult<()> {
        write::schedules::schedule_delete(self, name).await
    }
    async fn schedule_set_paused(
        &self,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> StoreResult<ScheduleRecord> {
        write::schedules::schedule_set_paused(self, name, paused, now).await
    }
    async fn schedule_fire_due(
        &self,
        now: Millis,
        limit: u32,
    ) -> StoreResult<(Vec<FiredTick>, Effects)> {
        write::schedules::schedule_fire_due(self, now, limit).await
    }
    async fn schedule_release_due(&self, now: Millis) -> StoreResult<(Vec<FiredTick>, Effects)> {
        write::prepared::schedule_release_due(self, now).await
    }
    async fn schedule_prepare(
        &self,
        now: Millis,
        until: Millis,
        limit: u32,
    ) -> StoreResult<(u32, Effects)> {
        write::prepared::schedule_prepare(self, now, until, limit).await
    }
    async fn schedule_trigger(
        &self,
        name: &str,
        now: Millis,
        key: String,
    ) -> StoreResult<(FiredTick, Effects)> {
        write::schedules::schedule_trigger(self, name, now, key).await
    }
    async fn schedule_next_due(&self) -> StoreResult<Option<Millis>> {
        write::schedules::schedule_next_due(&self.client().await?).await
    }
}

#[async_trait]
impl HealthStore for PostgresStore {
    async fn schema_version(&self) -> StoreResult<SchemaVersion> {
        let found = migrate::found_version(&self.client().await?)
            .await
            .map_err(conv::db)?;
        Ok(SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        })
    }

    async fn store_facts(&self) -> StoreResult<StoreFacts> {
        write::store_facts(self).await
    }
}

impl Store for PostgresStore {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notifier.stop();
        self.pool.close();
    }
}
