//! What both drivers share for schedules: turning a tick into a run to create, and a cache
//! of compiled schedule documents so a fire pass over thousands of schedules does not parse
//! a cron expression per tick.
//!
//! Exactly once per tick rests on the store, not on leadership: the fire step reads due
//! schedules, creates their runs and advances `next_fire_at` in one transaction (PostgreSQL
//! locks the rows it fires), and every tick's run carries the idempotency key
//! [`tick_key`], so even two overlapping leaders cannot create a tick's run twice.
//!
//! Ticks are prepared ahead (docs/decisions/0010): a few seconds before a tick, the prepare
//! step creates its run *held* (`queued`, roots `pending` with no timer and a deferral that
//! names the tick, [`held_reason`]) and records it in the schedule's `prepared_run`. No timer
//! can start a held run; only the fire step does, at the tick, if the misfire policy fires
//! that tick and the flow version is still the one the schedule uses ([`keeps_prepared`]).
//! So a burst of ticks costs at the tick only the release of held roots, not the creation of
//! runs, and every rule above (misfire, pause, exactly once) stays where it was: in the fire
//! step's transaction. Pausing, re-applying or deleting a schedule deletes its held run
//! (a held run never started, and its idempotency key must be free for the tick again).

use crate::{NewRun, StoreError, StoreResult};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use weft_core::nodes::NodeKind;
use weft_core::schedule::{CompiledSchedule, FirePlan, Misfire, ScheduleSpec, fire_context};
use weft_core::template::render_value;
use weft_core::time::Millis;
use weft_core::{CompiledFlow, CompiledNode};

/// The idempotency key of a schedule's run for the tick at `fire_time`.
pub fn tick_key(schedule: &str, fire_time: Millis) -> String {
    format!("schedule:{schedule}:{fire_time}")
}

/// The idempotency key of a manual trigger (`id` makes each trigger its own run).
pub fn manual_key(schedule: &str, id: &str) -> String {
    format!("schedule:{schedule}:manual:{id}")
}

/// The run one tick (or a manual trigger) starts, with its input rendered for that tick.
pub fn tick_run(
    s: &CompiledSchedule,
    flow: Arc<CompiledFlow>,
    version: u32,
    fire_time: Millis,
    key: String,
    manual: bool,
    now: Millis,
) -> NewRun {
    let input = if s.spec.input.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        let ctx = fire_context(&s.spec.name, fire_time, manual);
        // Checked when the schedule was applied; should it fail now, the raw input is
        // better than no run at all.
        render_value(&s.spec.input, &ctx).unwrap_or_else(|_| s.spec.input.clone())
    };
    NewRun {
        id: new_run_id(),
        flow,
        version,
        input,
        idempotency_key: Some(key),
        parent: None,
        created_at: now,
        start_at: None,
    }
}

/// The run a tick prepared ahead starts: [`tick_run`] with its start at the tick, so its
/// roots are created `pending` at their due times (the driver then holds them).
pub fn prepared_run(
    s: &CompiledSchedule,
    flow: Arc<CompiledFlow>,
    version: u32,
    tick: Millis,
    now: Millis,
) -> NewRun {
    let key = tick_key(&s.spec.name, tick);
    NewRun {
        start_at: Some(tick),
        ..tick_run(s, flow, version, tick, key, false, now)
    }
}

/// The deferral reason a held root shows until its tick fires.
pub fn held_reason(schedule: &str, tick: Millis) -> String {
    format!(
        "prepared for tick {} of schedule {schedule}; starts when the tick fires",
        weft_core::time::rfc3339(tick)
    )
}

/// Whether the fire step releases the run prepared for tick `due` (else it deletes it): the
/// misfire policy fires that tick and the run uses the flow version the schedule now
/// resolves to (a flow applied again since preparing makes a fresh run).
pub fn keeps_prepared(plan: &FirePlan, due: Millis, prepared: u32, now_version: u32) -> bool {
    plan.ticks.contains(&due) && prepared == now_version
}

/// A held run to start at its tick, once [`keeps_prepared`] said it may.
#[derive(Debug, Clone)]
pub struct Release {
    /// The held run.
    pub run: String,
    /// Its flow, at the version it was prepared with.
    pub flow: Arc<CompiledFlow>,
    /// That version.
    pub version: u32,
    /// The tick it was prepared for.
    pub tick: Millis,
}

impl Release {
    /// The release of a due schedule's held `run`, prepared for `at` with flow version
    /// `prepared`, if the fire step would release it now: the schedule's flow resolves
    /// (`flow`) to the same version and the plan at `now` fires `at` ([`keeps_prepared`]).
    pub fn of_due(
        plans: &mut PlanMemo,
        schedule: &CompiledSchedule,
        flow: StoreResult<ScheduleFlow>,
        run: String,
        prepared: Option<u32>,
        at: Millis,
        now: Millis,
    ) -> Option<Release> {
        let (Ok((flow, version)), Some(prepared)) = (flow, prepared) else {
            return None;
        };
        keeps_prepared(plans.plan(schedule, at, now), at, prepared, version).then_some(Release {
            run,
            flow,
            version,
            tick: at,
        })
    }

    /// When root `node` of the run starts: `None` for a root that becomes ready at once,
    /// the end of its delay counted from the tick (not from the release) for a `delay` root.
    pub fn root_due(&self, node: &CompiledNode) -> Option<Millis> {
        (node.kind == NodeKind::Delay)
            .then(|| self.tick + node.delay.unwrap_or_default().as_millis() as Millis)
    }
}

/// The report of a due schedule whose stored document no longer compiles (a zone dropped
/// from the time-zone database, say): it stops (`next_fire_at` cleared) instead of failing
/// every other schedule's fire step.
pub fn unreadable(schedule: &str, due: Millis, error: &StoreError) -> crate::FiredTick {
    crate::FiredTick {
        schedule: schedule.to_string(),
        fire_time: due,
        run_id: None,
        created: false,
        error: Some(format!("schedule stopped: {error}")),
    }
}

/// A fresh run id (UUID v7).
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Fire plans computed during one fire pass, shared by the schedules that have the same
/// expression, zone, misfire policy and due tick (common: many schedules on `@hourly`), so a
/// pass over thousands of them computes each plan once. Looked up without copying the key.
#[derive(Default)]
pub struct PlanMemo(HashMap<u64, Vec<(PlanKey, FirePlan)>>);

/// Expression, zone, misfire policy and due tick.
type PlanKey = (String, String, Misfire, Millis);

impl PlanMemo {
    /// `s`'s plan for its tick `due` at `now` (see [`CompiledSchedule::plan`]).
    pub fn plan(&mut self, s: &CompiledSchedule, due: Millis, now: Millis) -> &FirePlan {
        let spec = &s.spec;
        let mut h = std::hash::DefaultHasher::new();
        (&spec.cron, &spec.timezone, spec.misfire, due).hash(&mut h);
        let same = |(cron, zone, misfire, at): &PlanKey| {
            *cron == spec.cron && *zone == spec.timezone && *misfire == spec.misfire && *at == due
        };
        let kept = self.0.entry(h.finish()).or_default();
        let i = match kept.iter().position(|(k, _)| same(k)) {
            Some(i) => i,
            None => {
                let key = (spec.cron.clone(), spec.timezone.clone(), spec.misfire, due);
                kept.push((key, s.plan(due, now)));
                kept.len() - 1
            }
        };
        &kept[i].1
    }
}

/// A schedule's flow and the version its runs use.
pub type ScheduleFlow = (Arc<CompiledFlow>, u32);

/// The flow of each schedule in one pass, looked up once per flow name and pinned version
/// (the schedules of a pass often share a flow). A failed lookup is kept too, so every
/// schedule of a missing flow gets the same answer without another query.
#[derive(Default)]
pub struct FlowMemo(HashMap<String, HashMap<Option<u32>, StoreResult<ScheduleFlow>>>);

impl FlowMemo {
    /// The lookup kept for `spec`'s flow, if there is one.
    pub fn get(&self, spec: &ScheduleSpec) -> Option<StoreResult<ScheduleFlow>> {
        self.0.get(&spec.flow)?.get(&spec.version).cloned()
    }

    /// Keeps `found`, the lookup of `spec`'s flow, and returns it.
    pub fn keep(
        &mut self,
        spec: &ScheduleSpec,
        found: StoreResult<ScheduleFlow>,
    ) -> StoreResult<ScheduleFlow> {
        self.0
            .entry(spec.flow.clone())
            .or_default()
            .insert(spec.version, found.clone());
        found
    }
}

/// Parses a stored schedule document.
pub fn stored_schedule(name: &str, text: &str) -> StoreResult<ScheduleSpec> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("schedule {name}: {e}")))
}

/// Compiled schedules by name, valid while their stored text is unchanged.
#[derive(Default)]
pub struct ScheduleCache(Mutex<HashMap<String, (String, Arc<CompiledSchedule>)>>);

impl ScheduleCache {
    /// The compiled form of schedule `name` stored as `text`.
    pub fn get(&self, name: &str, text: &str) -> StoreResult<Arc<CompiledSchedule>> {
        if let Some((t, c)) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            && t == text
        {
            return Ok(c.clone());
        }
        let compiled = stored_schedule(name, text)?
            .compile()
            .map(Arc::new)
            .map_err(|e| StoreError::Corrupt(format!("schedule {name}: {e}")))?;
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), (text.to_string(), compiled.clone()));
        Ok(compiled)
    }
}
