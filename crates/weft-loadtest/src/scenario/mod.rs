//! The scenario file: what traffic to send (weighted [`Step`]s), how fast ([`Phase`]s of
//! arrivals per second) and what counts as a pass ([`crate::slo`] thresholds).
//!
//! Unknown fields are rejected and every value is checked by [`Scenario::validate`] before
//! any traffic is sent; errors name the field path, what is wrong and what is allowed.

mod schedule;
mod validate;

pub use schedule::Schedule;

use crate::LoadtestError;
use crate::slo::Slo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Default connections to the target (each carries one request at a time, HTTP/1.1).
pub const DEFAULT_CONNECTIONS: usize = 64;
/// Default cap on arrivals queued or in flight; arrivals beyond it are dropped and counted.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time without any successful answer after which the test is ended early.
pub const DEFAULT_ABORT_AFTER: Duration = Duration::from_secs(10);
/// Default interval between polls of a run a `start_run` step waits on.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Default time, after the last phase, to wait for started runs to finish.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of runs whose completion is tracked at once.
pub const DEFAULT_MAX_TRACKED: usize = 2000;
/// Default page size of `list_runs`.
pub const DEFAULT_LIST_LIMIT: u32 = 20;
/// Highest arrival rate a phase may ask for, per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// A load test: steps, phases and SLOs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports and baselines [default: `loadtest`].
    #[serde(default = "default_name")]
    pub name: String,
    /// Keep-alive connections to the target [default: 64].
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Arrivals queued or in flight at once; more are dropped and counted [default: 1024].
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Per-request timeout [default: 10s].
    #[serde(default = "default_timeout", with = "dur")]
    pub timeout: Duration,
    /// End the test early when no request has succeeded for this long [default: 10s].
    #[serde(default = "default_abort_after", with = "dur")]
    pub abort_after: Duration,
    /// What each arrival does, chosen at random by weight.
    pub steps: Vec<Step>,
    /// Arrival rates over time, run in order.
    pub phases: Vec<Phase>,
    /// Thresholds that decide pass or fail, e.g. `p95 < 200ms` [default: none].
    #[serde(default)]
    pub slo: Vec<Slo>,
    /// How runs started with `wait: true` are followed to completion.
    #[serde(default)]
    pub wait: WaitOptions,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// `POST /v1/runs` of `flow` with `input` (a template).
    StartRun,
    /// `GET /v1/runs/{id}` of a run this test started.
    GetRun,
    /// `GET /v1/runs?limit=N[&flow=F]`.
    ListRuns,
    /// Any request to a relative `path`.
    Request,
}

impl StepKind {
    /// The name used in YAML and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartRun => "start_run",
            Self::GetRun => "get_run",
            Self::ListRuns => "list_runs",
            Self::Request => "request",
        }
    }
}

/// One kind of request, picked for an arrival with probability weight / total weight.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Name in reports and SLOs [default: the kind].
    #[serde(default)]
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// Relative share of arrivals [default: 1].
    #[serde(default = "one")]
    pub weight: u32,
    /// `start_run`: the flow; `list_runs`: only this flow's runs (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// `start_run`: the run input; strings may use `{{n}}` (arrival number) and `{{rand}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// `start_run`: follow the run to completion and report its latency [default: false].
    #[serde(default)]
    pub wait: bool,
    /// `list_runs`: page size [default: 20].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `request`: the method [default: GET].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `request`: a path relative to the target, starting with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `request`: a JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// A stretch of the test at a constant (`rate`) or linearly changing (`from` -> `to`)
/// arrival rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Name in reports and SLOs [default: `phase-N`].
    #[serde(default)]
    pub name: String,
    /// Constant arrivals per second (not with `from`/`to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Ramp: arrivals per second at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<f64>,
    /// Ramp: arrivals per second at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<f64>,
    /// How long the phase lasts, e.g. `60s`.
    #[serde(with = "dur")]
    pub duration: Duration,
}

impl Phase {
    /// One phase named `steady`: a constant `rate` per second for `duration`.
    pub fn steady(rate: f64, duration: Duration) -> Self {
        Self {
            name: "steady".into(),
            rate: Some(rate),
            from: None,
            to: None,
            duration,
        }
    }

    /// (rate at start, rate at end) per second; validated phases always have one form.
    pub fn rates(&self) -> (f64, f64) {
        match (self.rate, self.from, self.to) {
            (Some(r), _, _) => (r, r),
            (None, f, t) => (f.unwrap_or(0.0), t.unwrap_or(0.0)),
        }
    }
}

/// Following started runs to their end.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitOptions {
    /// Time between polls of one run [default: 250ms].
    #[serde(default = "default_poll", with = "dur")]
    pub poll_interval: Duration,
    /// After the last phase, how long to wait for started runs to finish [default: 30s].
    #[serde(default = "default_wait_timeout", with = "dur")]
    pub timeout: Duration,
    /// Runs followed at once; further starts are not followed (and counted) [default: 2000].
    #[serde(default = "default_max_tracked")]
    pub max_tracked: usize,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            timeout: DEFAULT_WAIT_TIMEOUT,
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }
}

impl Scenario {
    /// Parses and validates a YAML (or JSON) scenario.
    pub fn from_yaml(text: &str) -> Result<Self, LoadtestError> {
        let value: Value = serde_saphyr::from_str_with_options(
            text,
            serde_saphyr::options! { strict_booleans: true },
        )
        .map_err(|e| LoadtestError::scenario("", format!("malformed YAML: {e}")))?;
        if !value.is_object() {
            return Err(LoadtestError::scenario(
                "",
                "a scenario must be a mapping with `steps` and `phases`",
            ));
        }
        let mut s: Scenario = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string().replace(".?", "");
            let path = if path == "." { String::new() } else { path };
            LoadtestError::scenario(path, e.into_inner().to_string())
        })?;
        s.fill_names();
        s.validate()?;
        Ok(s)
    }

    /// Reads, parses and validates a scenario file.
    pub fn from_path(path: &Path) -> Result<Self, LoadtestError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadtestError::Io {
            context: format!("cannot read scenario {}", path.display()),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// A short scenario for smoke checks (`weft validate`): starts runs of `flow` with input
    /// `{}` and waits for them (weight 3), reads them back (2) and lists runs (1), at a
    /// constant `rate` for `duration`, judged by `slo`.
    pub fn quick(
        flow: &str,
        rate: f64,
        duration: Duration,
        slo: &[&str],
    ) -> Result<Self, LoadtestError> {
        let step = |kind, weight| Step {
            name: String::new(),
            kind,
            weight,
            flow: None,
            input: None,
            wait: false,
            limit: None,
            method: None,
            path: None,
            body: None,
        };
        let slo = slo
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Slo::parse(s).map_err(|m| LoadtestError::scenario(format!("slo[{i}]"), m))
            })
            .collect::<Result<_, _>>()?;
        let mut s = Self {
            name: format!("quick-{flow}"),
            connections: 16,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            timeout: DEFAULT_TIMEOUT,
            abort_after: DEFAULT_ABORT_AFTER,
            steps: vec![
                Step {
                    flow: Some(flow.to_string()),
                    input: Some(Value::Object(Default::default())),
                    wait: true,
                    ..step(StepKind::StartRun, 3)
                },
                step(StepKind::GetRun, 2),
                step(StepKind::ListRuns, 1),
            ],
            phases: vec![Phase::steady(rate, duration)],
            slo,
            wait: WaitOptions::default(),
        };
        s.fill_names();
        s.validate()?;
        Ok(s)
    }

    /// The flows `start_run` steps start, each once.
    pub fn flows(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in self
            .steps
            .iter()
            .filter(|s| s.kind == StepKind::StartRun)
            .filter_map(|s| s.flow.clone())
        {
            if !out.contains(&f) {
                out.push(f);
            }
        }
        out
    }

    /// Sum of the phases' durations.
    pub fn total_duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    fn fill_names(&mut self) {
        for s in &mut self.steps {
            if s.name.is_empty() {
                s.name = s.kind.as_str().to_string();
            }
        }
        for (i, p) in self.phases.iter_mut().enumerate() {
            if p.name.is_empty() {
                p.name = format!("phase-{}", i + 1);
            }
        }
    }
}

fn default_name() -> String {
    "loadtest".into()
}
fn default_connections() -> usize {
    DEFAULT_CONNECTIONS
}
fn default_max_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_abort_after() -> Duration {
    DEFAULT_ABORT_AFTER
}
fn default_poll() -> Duration {
    DEFAULT_POLL_INTERVAL
}
fn default_wait_timeout() -> Duration {
    DEFAULT_WAIT_TIMEOUT
}
fn default_max_tracked() -> usize {
    DEFAULT_MAX_TRACKED
}
fn one() -> u32 {
    1
}

/// Durations as humantime text (`250ms`, `1m 30s`) in both directions.
mod dur {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. `500ms`, `30s`, `5m`"
            ))
        })
    }
}
