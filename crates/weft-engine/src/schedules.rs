//! Cron schedules: the engine's calls for managing them, and the duty that fires them.
//!
//! The duty runs where timers run: always in a process that owns its store, and in a
//! cluster only on the leader. It does not rely on leadership for correctness, though: the
//! store's fire step creates a tick's run, keyed by the tick, in the same transaction that
//! advances the schedule (see `weft_store::schedules`), so a tick fires once even if two
//! leaders overlap during a fail-over.
//!
//! The duty keeps no copy of the schedules: each schedule's next tick lives in the store
//! (`next_fire_at`, indexed), so after each pass one indexed `min()` says how long to sleep,
//! and no in-memory view has to be kept consistent with changes made by other processes.
//! Changes made through this process wake the duty at once; changes made elsewhere are seen
//! within [`MAX_SLEEP`].

use crate::engine::{Engine, Inner};
use crate::error::EngineError;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weft_core::schedule::{MAX_NEXT, ScheduleSpec, parse_schedule};
use weft_core::time::Millis;
use weft_core::{Issue, SpecError};
use weft_store::schedules::manual_key;
use weft_store::{Effects, FiredTick, ScheduleRecord};

/// Most schedules one fire call takes.
pub const FIRE_BATCH: u32 = 1000;
/// Fire calls made at once (see `pass`).
pub const FIRE_PIPELINE: usize = 4;
/// Longest sleep between looks at the store (how soon a schedule created by another
/// process, or a new leadership, is noticed).
pub const MAX_SLEEP: Duration = Duration::from_secs(1);
/// After a failed fire pass, how long until the next try.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Ticks one fire pass committed, with when the commit returned.
#[derive(Debug, Clone)]
pub struct SchedulesFired {
    /// When the fire transaction had committed (the engine's clock).
    pub committed_at: Millis,
    /// The ticks it fired.
    pub ticks: Vec<FiredTick>,
}

/// A schedule as shown to users: the stored record and its upcoming fire times.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleView {
    /// The stored schedule.
    #[serde(flatten)]
    pub record: ScheduleRecord,
    /// The next fire times (epoch ms), as many as asked for; empty while paused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upcoming: Vec<Millis>,
}

/// Fires due schedules until shutdown.
pub(crate) async fn duty(inner: Arc<Inner>) {
    loop {
        let wait = if my_turn(&inner) {
            pass(&inner).await
        } else {
            MAX_SLEEP
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.schedule_wake.notified() => {}
            _ = inner.stopping.cancelled() => return,
        }
    }
}

fn my_turn(inner: &Inner) -> bool {
    inner.config.cluster.is_none() || inner.is_leader.load(Ordering::SeqCst)
}

/// Fires everything due now, in batches; returns how long to sleep.
///
/// [`FIRE_PIPELINE`] batches are asked for at once: the SQLite writer applies them back to
/// back in one transaction (one commit instead of one per batch), and on PostgreSQL they
/// lock disjoint rows. Each batch sees the schedules the previous one advanced, so none is
/// fired twice. Effects go to the queues off this loop, so the next batches do not wait.
async fn pass(inner: &Arc<Inner>) -> Duration {
    loop {
        let now = inner.now();
        let batches = futures::future::join_all(
            (0..FIRE_PIPELINE).map(|_| inner.store.schedule_fire_due(now, FIRE_BATCH)),
        )
        .await;
        let committed_at = inner.now();
        let mut failed = None;
        let mut fired = Vec::new();
        let mut effects = Effects::default();
        for b in batches {
            match b {
                Ok((ticks, fx)) => {
                    fired.extend(ticks);
                    effects.merge(fx);
                }
                Err(e) => failed = Some(e),
            }
        }
        if !fired.is_empty() || !effects.ready.is_empty() {
            let inner = inner.clone();
            tokio::spawn(async move {
                inner.apply(effects);
                record(&fired, committed_at);
                if !fired.is_empty() {
                    let _ = inner.schedule_fired.send(Arc::new(SchedulesFired {
                        committed_at,
                        ticks: fired,
                    }));
                }
            });
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, "schedule fire pass failed; it is tried again");
            return RETRY_AFTER;
        }
        match inner.store.schedule_next_due().await {
            Ok(Some(next)) => {
                let now = inner.now();
                if next <= now {
                    continue;
                }
                return Duration::from_millis((next - now) as u64).min(MAX_SLEEP);
            }
            Ok(None) => return MAX_SLEEP,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the next schedule tick");
                return RETRY_AFTER;
            }
        }
    }
}

/// Fire lag and counts, without a per-schedule label (10,000 schedules would be 10,000 series).
fn record(ticks: &[FiredTick], committed_at: Millis) {
    for t in ticks {
        match &t.error {
            None if t.created => {
                metrics::counter!("weft_schedule_fires_total").increment(1);
                let lag = (committed_at - t.fire_time).max(0) as f64 / 1000.0;
                metrics::histogram!("weft_schedule_fire_lag_seconds").record(lag);
            }
            None => {}
            Some(e) => {
                metrics::counter!("weft_schedule_fire_errors_total").increment(1);
                tracing::warn!(schedule = %t.schedule, fire_time = t.fire_time, error = %e, "schedule tick started no run");
            }
        }
    }
}

impl Engine {
    /// Applies a schedule document (YAML or JSON text).
    pub async fn schedule_apply(&self, text: &str) -> Result<(ScheduleView, bool), EngineError> {
        let spec = parse_schedule(text).map_err(EngineError::ScheduleInvalid)?;
        self.schedule_apply_spec(spec).await
    }

    /// Validates and stores a schedule; true when it was created rather than replaced.
    pub async fn schedule_apply_spec(
        &self,
        spec: ScheduleSpec,
    ) -> Result<(ScheduleView, bool), EngineError> {
        spec.compile().map_err(EngineError::ScheduleInvalid)?;
        if let Err(EngineError::NotFound(_)) = self.flow_get(&spec.flow, spec.version).await {
            let what = match spec.version {
                Some(v) => format!("flow {:?} has no version {v}", spec.flow),
                None => format!("flow {:?} does not exist; apply it first", spec.flow),
            };
            let path = if spec.version.is_some() {
                "version"
            } else {
                "flow"
            };
            return Err(EngineError::ScheduleInvalid(SpecError {
                issues: vec![Issue::new(path, what)],
            }));
        }
        let inner = &self.inner;
        let (rec, created) = inner.store.schedule_put(&spec, inner.now()).await?;
        inner.schedule_wake.notify_one();
        Ok((self.view(rec, 0)?, created))
    }

    fn view(&self, record: ScheduleRecord, next: usize) -> Result<ScheduleView, EngineError> {
        let upcoming = match (next, record.next_fire_at) {
            (0, _) | (_, None) => Vec::new(),
            _ if record.spec.paused => Vec::new(),
            (n, Some(first)) => {
                let compiled = record
                    .spec
                    .compile()
                    .map_err(|e| EngineError::Internal(format!("stored schedule: {e}")))?;
                let mut v = vec![first];
                v.extend(compiled.next_n(first, n - 1));
                v
            }
        };
        Ok(ScheduleView { record, upcoming })
    }

    /// One schedule with its next `next` fire times (at most [`MAX_NEXT`]).
    pub async fn schedule_get(&self, name: &str, next: usize) -> Result<ScheduleView, EngineError> {
        if next > MAX_NEXT {
            return Err(EngineError::BadRequest(format!(
                "next is {next}; it must be between 0 and {MAX_NEXT}"
            )));
        }
        let rec = self
            .inner
            .store
            .schedule_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("schedule {name}")))?;
        self.view(rec, next)
    }

    /// Every schedule, by name.
    pub async fn schedule_list(&self) -> Result<Vec<ScheduleRecord>, EngineError> {
        Ok(self.inner.store.schedule_list().await?)
    }

    /// Deletes a schedule; its runs stay.
    pub async fn schedule_delete(&self, name: &str) -> Result<(), EngineError> {
        Ok(self.inner.store.schedule_delete(name).await?)
    }

    /// Pauses (true) or resumes (false) a schedule. Ticks due while paused never fire.
    pub async fn schedule_set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<ScheduleView, EngineError> {
        let inner = &self.inner;
        let rec = inner
            .store
            .schedule_set_paused(name, paused, inner.now())
            .await?;
        inner.schedule_wake.notify_one();
        self.view(rec, 0)
    }

    /// Starts a run of a schedule now, outside its ticks (paused or not).
    pub async fn schedule_trigger(&self, name: &str) -> Result<FiredTick, EngineError> {
        let inner = &self.inner;
        let key = manual_key(name, &uuid::Uuid::now_v7().to_string());
        let (tick, fx) = inner.store.schedule_trigger(name, inner.now(), key).await?;
        inner.apply(fx);
        Ok(tick)
    }

    /// Every fire pass's committed ticks, as they happen (for benchmarks and tests).
    pub fn schedules_fired(&self) -> tokio::sync::broadcast::Receiver<Arc<SchedulesFired>> {
        self.inner.schedule_fired.subscribe()
    }
}
