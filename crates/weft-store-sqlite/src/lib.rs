//! weft's embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread that group-commits (see [`writer`]); reads use a
//! pool of read-only connections. With the default durability (`synchronous = FULL`) a
//! commit survives both a process crash and a power loss; with `Durability::Normal` it
//! survives a process crash, and a power loss may drop the last commits (never corrupt).

mod checkpoint;
mod conv;
mod keys;
mod limits;
mod ops;
mod prepared;
mod read;
mod schedules;
mod schema;
pub mod writer;

use async_trait::async_trait;
use read::Readers;
use rusqlite::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_core::FlowSpec;
use weft_core::time::Millis;
use weft_store::*;
use writer::Writer;

/// Runs retention removes per writer transaction: small enough that other writes queued
/// behind a slice wait milliseconds, not the whole pass.
const PRUNE_SLICE: u32 = 500;

pub use schema::SCHEMA_VERSION;

/// How hard a commit tries to survive failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous = FULL`: every commit is on disk before it is acknowledged. Default.
    #[default]
    Full,
    /// `synchronous = NORMAL`: survives a process crash; a power loss may lose the newest commits.
    Normal,
}

/// Options for opening the store.
#[derive(Debug, Clone, Default)]
pub struct SqliteOptions {
    /// Commit durability.
    pub durability: Durability,
    /// Page limit, to bound the file size (0 = no limit). A write past it fails as "disk full".
    pub max_pages: u64,
}

/// The embedded store.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    path: PathBuf,
}

/// The database file inside a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("weft.db")
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, migrating it to this build's schema.
    pub fn open(data_dir: &Path, opts: SqliteOptions) -> Result<Arc<Self>, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
        let path = db_path(data_dir);
        let mut conn =
            Connection::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let sync = match opts.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = OFF;
             PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 0;"
        ))
        .map_err(|e| format!("cannot configure {}: {e}", path.display()))?;
        if opts.max_pages > 0 {
            conn.pragma_update(None, "max_page_count", opts.max_pages as i64)
                .map_err(|e| e.to_string())?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        conn.set_prepared_statement_cache_capacity(128);
        schema::migrate(&mut conn).map_err(|e| format!("{}: {e}", path.display()))?;
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (writer, _thread) = Writer::start(conn, closed.clone());
        checkpoint::start(path.clone(), writer.clone());
        Ok(Arc::new(Self {
            writer,
            readers: Arc::new(Readers::new(path.clone(), closed)),
            path,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl FlowStore for SqliteStore {
    async fn flow_put(&self, spec: &FlowSpec) -> StoreResult<(FlowRecord, bool)> {
        let spec = spec.clone();
        self.writer.exec(move |w| w.flow_put(&spec)).await
    }
    async fn flow_get(&self, name: &str, version: Option<u32>) -> StoreResult<Option<FlowRecord>> {
        let name = name.to_string();
        self.readers
            .point(move |c| read::flow_get(c, &name, version))
            .await
    }
    async fn flow_list(&self) -> StoreResult<Vec<FlowRecord>> {
        self.readers.with(read::flow_list).await
    }
    async fn flow_versions(&self, name: &str) -> StoreResult<Vec<FlowRecord>> {
        let name = name.to_string();
        self.readers
            .with(move |c| read::flow_versions(c, &name))
            .await
    }
    async fn flow_delete(&self, name: &str) -> StoreResult<u32> {
        let name = name.to_string();
        self.writer.exec(move |w| w.flow_delete(&name)).await
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn run_create(&self, runs: Vec<NewRun>) -> StoreResult<(Vec<RunCreated>, Effects)> {
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                let mut out = Vec::with_capacity(runs.len());
                for r in &runs {
                    out.push(w.run_create(r, &mut fx)?);
                }
                Ok((out, fx))
            })
            .await
    }
    async fn run_get(&self, id: &str) -> StoreResult<Option<RunDetail>> {
        let id = id.to_string();
        self.readers.point(move |c| read::run_get(c, &id)).await
    }
    async fn run_list(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        let filter = filter.clone();
        self.readers.with(move |c| read::run_list(c, &filter)).await
    }
    async fn run_cancel(&self, id: &str) -> StoreResult<Effects> {
        let id = id.to_string();
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                w.run_cancel(&id, &mut fx)?;
                Ok(fx)
            })
            .await
    }
    async fn run_inconsistencies(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<(Vec<Inconsistency>, Option<String>)> {
        let after = after.map(str::to_string);
        self.readers
            .with(move |c| read::run_inconsistencies(c, after.as_deref(), limit))
            .await
    }
    async fn run_recount(&self, run_id: &str) -> StoreResult<Effects> {
        let id = run_id.to_string();
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                w.run_recount(&id, &mut fx)?;
                Ok(fx)
            })
            .await
    }
    async fn run_prune(&self, cutoff: Millis) -> StoreResult<Pruned> {
        let mut pruned = Pruned::default();
        loop {
            let n = self
                .writer
                .exec(move |w| w.run_prune(cutoff, PRUNE_SLICE))
                .await?;
            pruned.runs += n;
            if n < u64::from(PRUNE_SLICE) {
                return Ok(pruned);
            }
        }
    }
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn task_complete(&self, results: Vec<TaskResult>) -> StoreResult<Effects> {
        self.writer
            .exec(move |w| {
                // Each result stands alone: one that cannot be applied (its flow version is
                // gone, say) is logged and left for re-running after a restart, while the
                // others commit with their effects. A SQLite error is different: it rolls
                // back the whole batch (see `writer`), so nothing is half-applied.
                let mut fx = Effects::default();
                for r in results {
                    let (run, node) = (r.task.run_id.clone(), r.task.node.clone());
                    let mut one = Effects::default();
                    match w.task_complete(r, &mut one) {
                        Ok(()) => fx.merge(one),
                        Err(e) => tracing::error!(%run, %node, error = %e, "attempt result not applied; the attempt re-runs after restart"),
                    }
                }
                Ok(fx)
            })
            .await
    }
    async fn task_promote_due(&self, now: Millis) -> StoreResult<Effects> {
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                w.promote_due(now, &mut fx)?;
                Ok(fx)
            })
            .await
    }
    async fn task_recover(&self) -> StoreResult<Effects> {
        self.writer
            .exec(|w| {
                let mut fx = Effects::default();
                w.recover(&mut fx)?;
                Ok(fx)
            })
            .await
    }
    async fn task_inputs(
        &self,
        run_id: &str,
        nodes: &[String],
    ) -> StoreResult<(Value, serde_json::Map<String, Value>)> {
        let (run_id, nodes) = (run_id.to_string(), nodes.to_vec());
        self.readers
            .point(move |c| read::task_inputs(c, &run_id, &nodes))
            .await
    }
}

#[async_trait]
impl ClaimStore for SqliteStore {
    async fn task_claim(
        &self,
        worker: &str,
        queue: &str,
        limit: u32,
        lease_until: Millis,
    ) -> StoreResult<Vec<ReadyTask>> {
        let (worker, queue) = (worker.to_string(), queue.to_string());
        self.writer
            .exec(move |w| w.task_claim(&worker, &queue, limit, lease_until))
            .await
    }
    async fn task_release(&self, worker: &str, tasks: &[ReadyTask]) -> StoreResult<u64> {
        let (worker, tasks) = (worker.to_string(), tasks.to_vec());
        self.writer
            .exec(move |w| w.task_release(&worker, &tasks))
            .await
    }
    async fn task_heartbeat(
        &self,
        worker: &str,
        lease_until: Millis,
    ) -> StoreResult<Vec<(String, String)>> {
        let worker = worker.to_string();
        self.writer
            .exec(move |w| w.task_heartbeat(&worker, lease_until))
            .await
    }
    async fn task_reap(&self, now: Millis) -> StoreResult<Effects> {
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                w.task_reap(now, &mut fx)?;
                Ok(fx)
            })
            .await
    }
    async fn leader_acquire(
        &self,
        duty: &str,
        holder: &str,
        now: Millis,
        ttl_ms: i64,
    ) -> StoreResult<bool> {
        let (duty, holder) = (duty.to_string(), holder.to_string());
        self.writer
            .exec(move |w| w.leader_acquire(&duty, &holder, now, ttl_ms))
            .await
    }
    async fn leader_release(&self, duty: &str, holder: &str) -> StoreResult<()> {
        let (duty, holder) = (duty.to_string(), holder.to_string());
        self.writer
            .exec(move |w| w.leader_release(&duty, &holder))
            .await
    }
    async fn leader_get(&self, duty: &str, now: Millis) -> StoreResult<Option<(String, Millis)>> {
        let duty = duty.to_string();
        self.readers
            .point(move |c| read::leader_get(c, &duty, now))
            .await
    }
}

#[async_trait]
impl MemberStore for SqliteStore {
    async fn member_beat(&self, member: &MemberRecord) -> StoreResult<()> {
        let member = member.clone();
        self.writer.exec(move |w| w.member_beat(&member)).await
    }
    async fn member_list(
        &self,
        now: Millis,
        stale_after_ms: i64,
    ) -> StoreResult<Vec<MemberRecord>> {
        self.readers
            .with(move |c| read::member_list(c, now, stale_after_ms))
            .await
    }
}

#[async_trait]
impl DlqStore for SqliteStore {
    async fn dlq_list(&self, filter: &DlqFilter) -> StoreResult<Vec<DeadTask>> {
        let filter = filter.clone();
        self.readers.with(move |c| read::dlq_list(c, &filter)).await
    }
    async fn dlq_count(&self, filter: &DlqFilter) -> StoreResult<u64> {
        let filter = filter.clone();
        self.readers
            .with(move |c| read::dlq_count(c, &filter))
            .await
    }
    async fn dlq_replay(&self, run_id: &str, node: &str) -> StoreResult<Effects> {
        let (run_id, node) = (run_id.to_string(), node.to_string());
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                w.dlq_replay(&run_id, &node, &mut fx)?;
                Ok(fx)
            })
            .await
    }
    async fn dlq_discard(&self, run_id: &str, node: &str) -> StoreResult<()> {
        let (run_id, node) = (run_id.to_string(), node.to_string());
        self.writer
            .exec(move |w| w.dlq_discard(&run_id, &node))
            .await
    }
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn queue_list(&self) -> StoreResult<Vec<QueueSettings>> {
        self.readers.with(read::queue_list).await
    }
    async fn queue_put(&self, settings: &QueueSettings) -> StoreResult<()> {
        let s = settings.clone();
        self.writer.exec(move |w| w.queue_put(&s)).await
    }
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn apikey_create(&self, key: &NewApiKey) -> StoreResult<ApiKeyRecord> {
        let key = key.clone();
        self.writer.exec(move |w| keys::create(&w.conn, &key)).await
    }
    async fn apikey_list(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.readers.with(keys::list).await
    }
    async fn apikey_revoke(&self, id: &str, at: Millis) -> StoreResult<ApiKeyRecord> {
        let id = id.to_string();
        self.writer
            .exec(move |w| keys::revoke(&w.conn, &id, at))
            .await
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn schedule_put(
        &self,
        spec: &weft_core::schedule::ScheduleSpec,
        now: Millis,
    ) -> StoreResult<(ScheduleRecord, bool)> {
        let spec = spec.clone();
        self.writer.exec(move |w| w.schedule_put(&spec, now)).await
    }
    async fn schedule_get(&self, name: &str) -> StoreResult<Option<ScheduleRecord>> {
        let name = name.to_string();
        self.readers.point(move |c| schedules::get(c, &name)).await
    }
    async fn schedule_list(&self) -> StoreResult<Vec<ScheduleRecord>> {
        self.readers.with(schedules::list).await
    }
    async fn schedule_delete(&self, name: &str) -> StoreResult<()> {
        let name = name.to_string();
        self.writer.exec(move |w| w.schedule_delete(&name)).await
    }
    async fn schedule_set_paused(
        &self,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> StoreResult<ScheduleRecord> {
        let name = name.to_string();
        self.writer
            .exec(move |w| w.schedule_set_paused(&name, paused, now))
            .await
    }
    async fn schedule_fire_due(
        &self,
        now: Millis,
        limit: u32,
    ) -> StoreResult<(Vec<FiredTick>, Effects)> {
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                let fired = w.schedule_fire_due(now, limit, &mut fx)?;
                Ok((fired, fx))
            })
            .await
    }
    async fn schedule_release_due(&self, now: Millis) -> StoreResult<(Vec<FiredTick>, Effects)> {
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                let fired = w.schedule_release_due(now, &mut fx)?;
                Ok((fired, fx))
            })
            .await
    }
    async fn schedule_prepare(
        &self,
        now: Millis,
        until: Millis,
        limit: u32,
    ) -> StoreResult<(u32, Effects)> {
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                let prepared = w.schedule_prepare(now, until, limit, &mut fx)?;
                Ok((prepared, fx))
            })
            .await
    }
    async fn schedule_trigger(
        &self,
        name: &str,
        now: Millis,
        key: String,
    ) -> StoreResult<(FiredTick, Effects)> {
        let name = name.to_string();
        self.writer
            .exec(move |w| {
                let mut fx = Effects::default();
                let fired = w.schedule_trigger(&name, now, key, &mut fx)?;
                Ok((fired, fx))
            })
            .await
    }
    async fn schedule_next_due(&self) -> StoreResult<Option<Millis>> {
        self.readers.point(schedules::next_due).await
    }
}

#[async_trait]
impl HealthStore for SqliteStore {
    async fn schema_version(&self) -> StoreResult<SchemaVersion> {
        let found = self.readers.point(keys::schema_version).await?;
        Ok(SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        })
    }

    async fn store_facts(&self) -> StoreResult<StoreFacts> {
        Ok(StoreFacts {
            kind: "sqlite".into(),
            // The writer's connection and the readers'; a file has no server-side limit.
            pool_size: read::MAX_READERS as u32 + 1,
            max_connections: None,
            reserved_connections: None,
            now: None,
        })
    }
}

impl Store for SqliteStore {
    fn close(&self) {
        self.writer.close();
    }
}
