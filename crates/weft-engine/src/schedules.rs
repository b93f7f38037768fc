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
//!
//! After each fire pass the duty prepares the ticks of the next [`PREPARE_AHEAD`]: their
//! runs are created ahead, held, so that at a tick the fire step only releases them (see
//! `weft_store::schedules` and docs/decisions/0010). Ten thousand schedules due in the same
//! second then cost, at that second, ten thousand small updates instead of ten thousand run
//! creations. Preparing stops when a tick is about to come due, so it does not hold the
//! store while a release waits.

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
/// How far ahead of its tick a run is prepared (created held). Longer than [`MAX_SLEEP`]
/// plus the time to create a large burst of runs, short enough that few prepared runs are
/// ever listed before their tick.
pub const PREPARE_AHEAD: Duration = Duration::from_secs(5);
/// Most ticks one prepare call takes. Calls stop when a tick is closer than twice the last
/// call's time, so a call never runs into a release; larger calls prepare a burst with
/// fewer commits (PostgreSQL keeps up with more per second).
pub const PREPARE_BATCH: u32 = 1000;

/// Ticks one fire pass committed, with when the commit returned.
#[derive(Debug, Clone)]
pub struct SchedulesFired {
    /// When the fire transaction had committed (the engine's clock).
    pub committed_at: Millis,
    /// When the ticks' runs were startable: the commit's ready tasks were in this process's
    /// queues (the engine's clock, after `committed_at`).
    pub ready_at: Millis,
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

/// Fires everything due now, then prepares what comes next; returns how long to sleep.
///
/// Prepared ticks are released first, in one call ([`release`]); the fire step then moves
/// the schedules on and creates the runs of ticks that were not prepared. [`FIRE_PIPELINE`]
/// batches are asked for at once: the SQLite writer applies them back to
/// back in one transaction (one commit instead of one per batch), and on PostgreSQL they
/// lock disjoint rows. Each batch sees the schedules the previous one advanced, so none is
/// fired twice. Effects go to the queues off this loop, so the next batches do not wait.
async fn pass(inner: &Arc<Inner>) -> Duration {
    release(inner).await;
    loop {
        let now = inner.now();
        let batches = futures::future::join_all(
            (0..FIRE_PIPELINE).map(|_| inner.store.schedule_fire_due(now, FIRE_BATCH)),
        )
        .await;
        let committed_at = inner.now();
        tracing::debug!(ms = committed_at - now, "schedule fire calls returned");
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
            tokio::spawn(async move { publish(&inner, fired, effects, committed_at) });
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, "schedule fire pass failed; it is tried again");
            return RETRY_AFTER;
        }
        let next = match inner.store.schedule_next_due().await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the next schedule tick");
                return RETRY_AFTER;
            }
        };
        if next.is_some_and(|n| n <= inner.now()) {
            continue;
        }
        prepare(inner, next).await;
        return match next {
            Some(next) if next <= inner.now() => Duration::ZERO,
            Some(next) => Duration::from_millis((next - inner.now()) as u64).min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
    }
}

/// Releases the due ticks prepared ahead, all in one call, before the fire step: at a
/// tick this is the only write between the tick and its runs being startable. The fire
/// step that follows moves the schedules on (and releases whatever this left, should it
/// fail).
async fn release(inner: &Arc<Inner>) {
    match inner.store.schedule_release_due(inner.now()).await {
        Ok((ticks, fx)) if !ticks.is_empty() => {
            let committed_at = inner.now();
            publish(inner, ticks, fx, committed_at);
        }
        Ok((_, fx)) => inner.apply(fx),
        Err(e) => tracing::warn!(error = %e, "releasing prepared schedule ticks failed"),
    }
}

/// Hands a committed pass's ready tasks to the queues, then records and announces its
/// ticks with the time they became startable.
fn publish(inner: &Arc<Inner>, fired: Vec<FiredTick>, effects: Effects, committed_at: Millis) {
    inner.apply(effects);
    let ready_at = inner.now();
    record(&fired, ready_at);
    if !fired.is_empty() {
        let _ = inner.schedule_fired.send(Arc::new(SchedulesFired {
            committed_at,
            ready_at,
            ticks: fired,
        }));
    }
}

/// Prepares the ticks of the next [`PREPARE_AHEAD`], in calls of [`PREPARE_BATCH`], until
/// none is left or the tick `next` is too close to start another call (twice the last
/// call's time): releasing a due tick matters more than preparing a later one.
async fn prepare(inner: &Arc<Inner>, next: Option<Millis>) {
    let ahead = PREPARE_AHEAD.as_millis() as Millis;
    let mut took: Millis = 0;
    let (start, mut total) = (inner.now(), 0);
    let done = |total: u32, why: &str| {
        if total > 0 {
            tracing::debug!(
                prepared = total,
                ms = inner.now() - start,
                why,
                "schedule ticks prepared"
            );
        }
    };
    loop {
        let now = inner.now();
        if next.is_some_and(|n| now + 2 * took >= n) {
            return done(total, "a tick is due soon");
        }
        match inner
            .store
            .schedule_prepare(now, now + ahead, PREPARE_BATCH)
            .await
        {
            Ok((n, fx)) => {
                inner.apply(fx);
                metrics::counter!("weft_schedule_prepared_total").increment(u64::from(n));
                total += n;
                if n < PREPARE_BATCH {
                    return done(total, "all prepared");
                }
            }
            Err(e) => {
                // The ticks are then created when they come due, as without preparing.
                tracing::warn!(error = %e, "preparing schedule ticks failed");
                return;
            }
        }
        took = inner.now() - now;
    }
}

/// Fire lag (tick due to its run startable) and counts, without a per-schedule label
/// (10,000 schedules would be 10,000 series).
fn record(ticks: &[FiredTick], ready_at: Millis) {
    for t in ticks {
        match &t.error {
            None if t.created => {
                metrics::counter!("weft_schedule_fires_total").increment(1);
                let lag = (ready_at - t.fire_time).max(0) as f64 / 1000.0;
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
