//! Management calls behind the v1 API: flow versions and deletion, retrying a failed run,
//! reading and discarding dead tasks, batch cancels, and the worker processes.
//!
//! They live apart from `engine.rs` (the hot paths: starting runs, completions) because
//! they are thin compositions of store calls that only operators make.

use crate::engine::Engine;
use crate::error::EngineError;
use futures::{StreamExt, stream};
use serde::Serialize;
use weft_core::time::Millis;
use weft_core::{RunState, TaskState};
use weft_store::{DeadTask, DlqCursor, DlqFilter, FlowRecord};

/// How many items of a bulk action run at once.
pub const BULK_PARALLEL: usize = 16;

/// What a bulk dead-letter call does to each task.
#[derive(Clone, Copy)]
enum Dlq {
    Replay,
    Discard,
}

/// One item of a batch: its own success or error, in request order.
pub type BatchItem<T> = Result<T, EngineError>;

/// One queue a worker serves.
#[derive(Debug, Clone, Serialize)]
pub struct QueueServed {
    /// Queue name.
    pub name: String,
    /// Its concurrency limit.
    pub concurrency: u32,
    /// Attempts of it running now.
    pub running: u32,
}

/// A worker process. Alone on its database weft has exactly one (itself, with
/// `heartbeat_age_ms` 0); in a cluster each comes from a member's last beat in the store.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    /// Worker id (a UUID v7 made at start).
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: u32,
    /// Queues it serves.
    pub queues: Vec<QueueServed>,
    /// When it started.
    pub started_at: Millis,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
    /// Attempts running now across its queues.
    pub load: u32,
    /// True when it serves every queue (none named in its configuration), including
    /// queues not in `queues` yet because it has not met them.
    pub all_queues: bool,
    /// Database connections its store may open at once.
    pub pool_size: u32,
    /// False while it drains (it takes no new work).
    pub ready: bool,
    /// Its clock minus the database's when its last beat was written, in ms (the beat's
    /// one-way trip included); `None` outside a cluster or on a store without its own clock.
    pub clock_skew_ms: Option<i64>,
}

impl Engine {
    /// Every stored version of a flow, oldest first.
    pub async fn flow_versions(&self, name: &str) -> Result<Vec<FlowRecord>, EngineError> {
        let versions = self.inner.store.flow_versions(name).await?;
        if versions.is_empty() {
            return Err(EngineError::NotFound(format!("flow {name}")));
        }
        Ok(versions)
    }

    /// Deletes a flow (every version); its finished runs stay readable. Refused while a run
    /// of it is queued or running or has a dead task. Returns how many versions were deleted.
    pub async fn flow_delete(&self, name: &str) -> Result<u32, EngineError> {
        let n = self.inner.store.flow_delete(name).await?;
        self.inner.forget_flow(name);
        Ok(n)
    }

    /// Retries a failed run: every dead task gets a fresh set of attempts and the run
    /// resumes. Returns the replayed nodes. 409 unless the run is `failed` with dead tasks.
    pub async fn run_retry(&self, id: &str) -> Result<Vec<String>, EngineError> {
        let detail = self
            .inner
            .store
            .run_get(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("run {id}")))?;
        if detail.run.state != RunState::Failed {
            return Err(EngineError::Conflict(format!(
                "run {id} is {}; only a failed run can be retried",
                detail.run.state
            )));
        }
        let dead: Vec<String> = detail
            .tasks
            .into_iter()
            .filter(|t| t.state == TaskState::Dead)
            .map(|t| t.node)
            .collect();
        if dead.is_empty() {
            return Err(EngineError::Conflict(format!(
                "run {id} has no dead tasks left to retry (they were discarded)"
            )));
        }
        for node in &dead {
            self.dlq_replay(id, node).await?;
        }
        Ok(dead)
    }

    /// Cancels many runs; each gets its own result, in order.
    pub async fn run_cancel_many(&self, ids: &[String]) -> Vec<BatchItem<()>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.run_cancel(id).await);
        }
        out
    }

    /// One dead task.
    pub async fn dlq_get(&self, run_id: &str, node: &str) -> Result<DeadTask, EngineError> {
        let not_found = || EngineError::NotFound(format!("dead task {node} of run {run_id}"));
        let detail = self
            .inner
            .store
            .run_get(run_id)
            .await?
            .ok_or_else(not_found)?;
        let task = detail
            .tasks
            .into_iter()
            .find(|t| t.node == node && t.state == TaskState::Dead)
            .ok_or_else(not_found)?;
        Ok(DeadTask {
            run_id: detail.run.id,
            flow: detail.run.flow,
            node: task.node,
            error: task.error,
            attempts: task.attempts,
            dead_at: task.finished_at.unwrap_or(detail.run.created_at),
        })
    }

    /// Discards a dead task of a failed run: it becomes `cancelled` and the run stays
    /// `failed` for good (unless another dead task of it is replayed).
    pub async fn dlq_discard(&self, run_id: &str, node: &str) -> Result<(), EngineError> {
        Ok(self.inner.store.dlq_discard(run_id, node).await?)
    }

    /// Replays many dead tasks; each gets its own result, in order. Up to
    /// [`BULK_PARALLEL`] run at once, so the store can commit them together.
    pub async fn dlq_replay_many(&self, items: &[(String, String)]) -> Vec<BatchItem<()>> {
        self.each_dead(items, Dlq::Replay).await
    }

    /// Discards many dead tasks; each gets its own result, in order.
    pub async fn dlq_discard_many(&self, items: &[(String, String)]) -> Vec<BatchItem<()>> {
        self.each_dead(items, Dlq::Discard).await
    }

    async fn each_dead(&self, items: &[(String, String)], action: Dlq) -> Vec<BatchItem<()>> {
        let calls = items.iter().cloned().map(|(run, node)| {
            let engine = self.clone();
            async move {
                match action {
                    Dlq::Replay => engine.dlq_replay(&run, &node).await,
                    Dlq::Discard => engine.dlq_discard(&run, &node).await,
                }
            }
        });
        stream::iter(calls).buffered(BULK_PARALLEL).collect().await
    }

    /// One page of the dead tasks matching `filter`, and the cursor of the page after it
    /// (`None` when this page is the last).
    pub async fn dlq_page(
        &self,
        filter: &DlqFilter,
    ) -> Result<(Vec<DeadTask>, Option<DlqCursor>), EngineError> {
        let dead = self.inner.store.dlq_list(filter).await?;
        // The store's reading of the limit: 0 means 50, at most 1000.
        let cap = match filter.limit {
            0 => 50,
            l => l.min(1000),
        };
        let full = dead.len() as u32 >= cap;
        let next = dead.last().filter(|_| full).map(DlqCursor::after);
        Ok((dead, next))
    }

    /// How many dead tasks match `filter` (its cursor and limit aside).
    pub async fn dlq_count(&self, filter: &DlqFilter) -> Result<u64, EngineError> {
        Ok(self.inner.store.dlq_count(filter).await?)
    }

    /// Whether this process holds the cluster's leader lease (always false outside a
    /// cluster, where there is nothing to lead).
    pub fn is_leader(&self) -> bool {
        self.inner
            .is_leader
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The current leader's node id and lease end, read from the store (`None` outside a
    /// cluster or while nobody holds the lease).
    pub async fn leader(&self) -> Result<Option<(String, i64)>, EngineError> {
        if self.inner.config.cluster.is_none() {
            return Ok(None);
        }
        Ok(self
            .inner
            .store
            .leader_get(crate::cluster::LEADER_DUTY, self.inner.now())
            .await?)
    }

    /// The worker processes serving this store. Alone on its database, that is this
    /// process. In a cluster, it is every member with the worker role whose last
    /// membership beat is younger than three leases, as of that beat.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, EngineError> {
        Ok(self
            .members()
            .await?
            .into_iter()
            .filter(|m| m.roles.iter().any(|r| r == "worker"))
            .map(|m| m.process)
            .collect())
    }
}
