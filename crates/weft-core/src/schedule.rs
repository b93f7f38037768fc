//! Cron schedules: the document users apply, its validation, and the fire times it yields.
//!
//! Times are computed in the schedule's IANA zone, so a daily `0 30 2 * * *` stays at 02:30
//! local time across daylight-saving changes. What happens inside a change is croner's
//! documented behaviour: a fixed time that falls into the spring-forward gap fires at the
//! first valid time after it (03:00 in Europe/Berlin), and a fixed time inside the
//! fall-back overlap fires once, at its first occurrence. Wildcard or stepped fields fire
//! by wall clock: none inside a gap, both passes of an overlap.
//!
//! Nothing here does I/O or reads the clock: the store's fire step calls [`CompiledSchedule::plan`]
//! with its own "now", inside the transaction that creates the runs.

use crate::error::{Issue, SpecError};
use crate::time::Millis;
use chrono::TimeZone;
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most missed ticks `misfire: {catch_up: N}` may fire after downtime.
pub const MAX_CATCH_UP: u32 = 1000;
/// A tick later than this is missed: `misfire: skip` does not fire it.
pub const MISFIRE_GRACE_MS: Millis = 60_000;
/// Most fire times one request for upcoming times may ask for.
pub const MAX_NEXT: usize = 100;
/// The zone a schedule without `timezone` uses.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// A schedule as users write it (YAML or JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Unique schedule name (letters, digits, `_`, `-`, `.`; at most 128 characters).
    pub name: String,
    /// Free text shown in listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The flow each tick starts a run of.
    pub flow: String,
    /// The flow version; the latest at fire time when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Cron expression: 6 fields (second minute hour day-of-month month day-of-week), or
    /// 5 (no seconds: fires at second 0), or a nickname such as `@daily`.
    pub cron: String,
    /// IANA time zone the expression is read in (default `UTC`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// The run input. Strings may use `{{ schedule.name }}`, `{{ schedule.fire_time }}`
    /// (RFC 3339, UTC), `{{ schedule.fire_time_ms }}` and `{{ schedule.manual }}`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
    /// What to do with ticks missed while no orchestrator ran (default `skip`).
    #[serde(default)]
    pub misfire: Misfire,
    /// Applied paused: no tick fires until it is resumed.
    #[serde(default)]
    pub paused: bool,
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_string()
}

/// What to do with ticks that were due while no orchestrator could fire them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Fire only the latest due tick, and only if it is at most [`MISFIRE_GRACE_MS`] late;
    /// older ticks are skipped.
    #[default]
    Skip,
    /// Fire the latest N due ticks (oldest first), however late; older ones are skipped.
    CatchUp(u32),
}

/// A validated schedule, ready to compute fire times.
#[derive(Debug, Clone)]
pub struct CompiledSchedule {
    /// The document.
    pub spec: ScheduleSpec,
    cron: Cron,
    tz: Tz,
}

/// What one fire pass does for one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// The ticks to fire, oldest first.
    pub ticks: Vec<Millis>,
    /// The first tick after `now`; `None` when the expression never fires again.
    pub next: Option<Millis>,
}

const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, W"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT, #, L"),
];

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Required).build()
}

/// Parses and validates a cron expression, naming the field at fault.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let e = expr.trim();
    if e.starts_with('@') {
        return parser()
            .parse(e)
            .map_err(|err| format!("cron {expr:?}: {}", describe(&err)));
    }
    let mut fields: Vec<&str> = e.split_whitespace().collect();
    match fields.len() {
        5 => fields.insert(0, "0"),
        6 => {}
        n => {
            return Err(format!(
                "cron {expr:?} has {n} fields; expected 6 (second minute hour day-of-month month day-of-week), 5 (without seconds) or a nickname such as @daily"
            ));
        }
    }
    for (i, value) in fields.iter().enumerate() {
        let mut alone = ["*"; 6];
        alone[i] = value;
        if let Err(err) = parser().parse(&alone.join(" ")) {
            let (field, allowed) = FIELDS[i];
            return Err(format!(
                "cron {expr:?}: {field} field {value:?} {}; allowed: {allowed}, with * , - /",
                describe_field(&err, allowed)
            ));
        }
    }
    parser()
        .parse(&fields.join(" "))
        .map_err(|err| format!("cron {expr:?}: {}", describe(&err)))
}

fn describe(err: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    match err {
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => {
            m.trim_end_matches('.').to_lowercase()
        }
        other => other.to_string().trim_end_matches('.').to_lowercase(),
    }
}

fn describe_field(err: &croner::errors::CronError, allowed: &str) -> String {
    let d = describe(err);
    if d.contains("out of bounds") {
        format!(
            "is out of range {}",
            allowed.split(',').next().unwrap_or(allowed)
        )
    } else {
        format!("is invalid ({d})")
    }
}

/// Parses an IANA zone name, suggesting the closest known one for a typo.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
        match crate::closest(name, names) {
            Some(c) => format!("timezone {name:?}: unknown IANA time zone (did you mean {c}?)"),
            None => format!(
                "timezone {name:?}: unknown IANA time zone; use a name such as UTC or Europe/Paris"
            ),
        }
    })
}

/// Parses a YAML or JSON schedule document, naming the path of any shape error.
pub fn parse_schedule(text: &str) -> Result<ScheduleSpec, SpecError> {
    let value = crate::spec::parse_document(text)?;
    if !value.is_object() {
        return Err(SpecError::one(
            "",
            "a schedule document must be a mapping with `name`, `flow` and `cron`",
        ));
    }
    serde_path_to_error::deserialize::<_, ScheduleSpec>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        SpecError {
            issues: vec![Issue::new(path, e.into_inner().to_string())],
        }
    })
}

impl ScheduleSpec {
    /// Validates the document, listing every problem with the field it concerns.
    pub fn compile(&self) -> Result<CompiledSchedule, SpecError> {
        let mut issues = Vec::new();
        for (path, value) in [("name", &self.name), ("flow", &self.flow)] {
            if !crate::is_valid_name(value) {
                issues.push(Issue::new(
                    path,
                    format!("{value:?} is not a valid name: use 1 to 128 letters, digits, `_`, `-` or `.`"),
                ));
            }
        }
        if self.version == Some(0) {
            issues.push(Issue::new(
                "version",
                "must be at least 1 (leave it out for the latest)",
            ));
        }
        if let Misfire::CatchUp(n) = self.misfire
            && !(1..=MAX_CATCH_UP).contains(&n)
        {
            issues.push(Issue::new(
                "misfire.catch_up",
                format!("{n} is out of range: catch up 1 to {MAX_CATCH_UP} ticks, or use `skip`"),
            ));
        }
        let cron = parse_cron(&self.cron)
            .map_err(|m| issues.push(Issue::new("cron", m)))
            .ok();
        let tz = parse_timezone(&self.timezone)
            .map_err(|m| issues.push(Issue::new("timezone", m)))
            .ok();
        let sample = fire_context(&self.name, 0, false);
        if let Err(m) = crate::template::render_value(&self.input, &sample) {
            issues.push(Issue::new("input", m));
        }
        let (Some(cron), Some(tz)) = (cron, tz) else {
            return Err(SpecError { issues });
        };
        let compiled = CompiledSchedule {
            spec: self.clone(),
            cron,
            tz,
        };
        // An expression such as `0 0 0 30 2 *` (February 30th) parses but never fires.
        if compiled.next_after(1_767_225_600_000).is_none() {
            issues.push(Issue::new(
                "cron",
                format!("cron {:?} never fires", self.cron),
            ));
        }
        if issues.is_empty() {
            Ok(compiled)
        } else {
            Err(SpecError { issues })
        }
    }
}

/// What a schedule's input templates may read: `schedule.{name, fire_time, fire_time_ms, manual}`.
pub fn fire_context(name: &str, fire_time: Millis, manual: bool) -> Value {
    serde_json::json!({
        "schedule": {
            "name": name,
            "fire_time": crate::time::rfc3339(fire_time),
            "fire_time_ms": fire_time,
            "manual": manual,
        }
    })
}

impl CompiledSchedule {
    /// The zone fire times are computed in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    fn at(&self, ms: Millis) -> Option<chrono::DateTime<Tz>> {
        self.tz.timestamp_millis_opt(ms).single()
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let start = self.at(after)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The next `n` ticks strictly after `after` (fewer if the expression stops firing).
    pub fn next_n(&self, after: Millis, n: usize) -> Vec<Millis> {
        let Some(start) = self.at(after) else {
            return Vec::new();
        };
        self.cron
            .iter_after(start)
            .take(n)
            .map(|t| t.timestamp_millis())
            .collect()
    }

    /// The ticks to fire at `now` for a schedule whose next tick was `due` (`due <= now`),
    /// per its misfire policy, and the tick after `now` it waits for next.
    pub fn plan(&self, due: Millis, now: Millis) -> FirePlan {
        let keep = match self.spec.misfire {
            Misfire::Skip => 1,
            Misfire::CatchUp(n) => n.max(1) as usize,
        };
        let mut ticks = Vec::new();
        if due <= now
            && let Some(start) = self.at(now)
        {
            // Walk back from now: a long outage of a per-second schedule must not cost one
            // step per missed tick.
            for t in self
                .cron
                .iter_from(start, croner::Direction::Backward)
                .map(|t| t.timestamp_millis())
            {
                if t < due || ticks.len() == keep {
                    break;
                }
                ticks.push(t);
            }
            ticks.reverse();
        }
        if self.spec.misfire == Misfire::Skip {
            ticks.retain(|t| now - t <= MISFIRE_GRACE_MS);
        }
        FirePlan {
            ticks,
            next: self.next_after(now),
        }
    }
}

#[cfg(test)]
mod tests;
