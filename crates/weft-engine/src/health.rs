//! What operators ask of a running engine — is it ready, who is it, how busy — and the
//! counters it feeds to the `metrics` facade. The engine is the front door to the store, so
//! it is where runs, attempts and store latency are counted once; the gateway only renders
//! them (`/metrics`). With no recorder installed, every counter is a no-op.

use crate::EngineError;
use crate::engine::Engine;
use std::sync::Arc;
use std::time::Instant;
use weft_core::TaskState;
use weft_store::{
    ApiKeyRecord, Change, FinishedRun, Outcome, RunCreated, SchemaVersion, TaskResult,
};

impl Engine {
    /// True once shutdown has begun: no new work is taken.
    pub fn is_draining(&self) -> bool {
        self.inner.stopping.is_cancelled()
    }

    /// The store's schema version and this build's; a cheap read that proves the store answers.
    pub async fn schema_version(&self) -> Result<SchemaVersion, EngineError> {
        let began = Instant::now();
        let v = self.inner.store.schema_version().await?;
        store_op("schema_version", began);
        Ok(v)
    }

    /// Every API key, revoked ones included (for the gateway's key cache).
    pub async fn apikey_list(&self) -> Result<Vec<ApiKeyRecord>, EngineError> {
        let began = Instant::now();
        let keys = self.inner.store.apikey_list().await?;
        store_op("apikey_list", began);
        Ok(keys)
    }

    /// This process's id (its worker id).
    pub fn node_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// The engine clock's time (ms since the epoch).
    pub fn now_ms(&self) -> i64 {
        self.inner.now()
    }

    /// When this engine started (ms since the epoch).
    pub fn started_at(&self) -> i64 {
        self.inner.started_at
    }

    /// The circuit breakers and latency figures of every target this process's workers
    /// have called, by target. Each process has its own: in a cluster this is one worker's
    /// view.
    pub fn breakers(&self) -> Vec<crate::nodes::breaker::BreakerInfo> {
        self.inner.breakers.list(self.inner.now())
    }
}

/// Records how long a store operation took.
pub(crate) fn store_op(op: &'static str, began: Instant) {
    metrics::histogram!("weft_store_op_seconds", "op" => op).record(began.elapsed().as_secs_f64());
}

/// Counts runs a start created (not the ones an idempotency key returned).
pub(crate) fn runs_started(flows: &[Arc<str>], created: &[RunCreated]) {
    for (flow, c) in flows.iter().zip(created) {
        if c.created {
            metrics::counter!("weft_runs_started_total", "flow" => flow.to_string()).increment(1);
        }
    }
}

/// Counts a run that reached a terminal state.
pub(crate) fn run_finished(f: &FinishedRun) {
    metrics::counter!(
        "weft_runs_finished_total",
        "flow" => f.flow.clone(),
        "state" => f.state.as_str()
    )
    .increment(1);
}

/// Counts recorded attempt results by queue and outcome; an attempt after the first is also
/// a retry.
pub(crate) fn attempts_recorded(results: &[TaskResult]) {
    for r in results {
        let outcome = match &r.outcome {
            Outcome::Succeeded(_) => "succeeded",
            Outcome::Failed { .. } => "failed",
            Outcome::StartChild(_) => "suspended",
            Outcome::Deferred { .. } => "deferred",
        };
        let queue = r.task.queue.to_string();
        metrics::counter!("weft_task_attempts_total", "queue" => queue.clone(), "outcome" => outcome)
            .increment(1);
        if r.task.attempt > 1 {
            metrics::counter!("weft_task_retries_total", "queue" => queue).increment(1);
        }
    }
}

/// Counts tasks that a committed write dead-lettered.
pub(crate) fn task_changes(changes: &[Change]) {
    for c in changes {
        if let Change::Task(t) = c
            && t.state == TaskState::Dead
        {
            metrics::counter!("weft_dead_letters_total", "flow" => t.flow.clone()).increment(1);
        }
    }
}

impl Engine {
    /// Stores a new API key (its hash; the caller issued it).
    pub async fn apikey_create(
        &self,
        key: &weft_store::NewApiKey,
    ) -> Result<ApiKeyRecord, EngineError> {
        let began = Instant::now();
        let rec = self.inner.store.apikey_create(key).await;
        store_op("apikey_create", began);
        Ok(rec?)
    }

    /// Revokes an API key.
    pub async fn apikey_revoke(&self, id: &str) -> Result<ApiKeyRecord, EngineError> {
        let began = Instant::now();
        let now = self.inner.now();
        let rec = self.inner.store.apikey_revoke(id, now).await;
        store_op("apikey_revoke", began);
        Ok(rec?)
    }
}

/// Whether this process holds the leader lease (1) or not (0).
pub(crate) fn leader(is_leader: bool) {
    metrics::gauge!("weft_cluster_leader").set(if is_leader { 1.0 } else { 0.0 });
}

/// One repair the sweeper made, by kind (`counters`, `orphan`, `lost_child`).
pub(crate) fn swept(kind: &'static str) {
    metrics::counter!("weft_sweeper_repairs_total", "kind" => kind).increment(1);
}

/// A sweeper pass finished (for an alert on a stalled duty).
pub(crate) fn sweep_passed() {
    metrics::gauge!("weft_sweeper_last_pass_timestamp_seconds").set(unix_now());
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// What a retention pass removed, and when it last succeeded (for an alert on a stalled duty).
pub(crate) fn pruned(p: &weft_store::Pruned) {
    metrics::counter!("weft_retention_runs_removed_total").increment(p.runs);
    metrics::counter!("weft_retention_partitions_dropped_total")
        .increment(p.partitions.len() as u64);
    metrics::gauge!("weft_retention_last_pass_timestamp_seconds").set(unix_now());
}
