//! The result of a load test, as data: what `--json` writes, what baselines store and what
//! the HTML report and the SLO verdicts are computed from. Latencies are milliseconds,
//! measured from each arrival's intended send time.

use crate::scenario::Scenario;
use crate::slo::SloResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the JSON shape; bumped on incompatible changes so old baselines are refused.
pub const REPORT_VERSION: u32 = 1;

/// A finished (or ended early) load test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The scenario as run (defaults filled in).
    pub scenario: Scenario,
    /// Base URL of the target.
    pub target: String,
    /// When traffic started (RFC 3339, UTC).
    pub started_at: String,
    /// Seconds from the first arrival to the end of the test (completion tracking excluded).
    pub duration_s: f64,
    /// Why the test ended before its last phase did, if it did.
    pub aborted: Option<String>,
    /// The whole test.
    pub totals: Totals,
    /// Per step, over all phases.
    pub steps: Vec<StepStats>,
    /// Per phase, with its steps.
    pub phases: Vec<PhaseStats>,
    /// Runs followed to completion (`wait: true` steps).
    pub completion: Option<CompletionStats>,
    /// One point per second.
    pub timeline: Vec<TimelinePoint>,
    /// The server's own figures scraped from `/metrics`.
    pub server: ServerStats,
    /// The generator's own timing.
    pub generator: GeneratorStats,
    /// SLO verdicts, in scenario order.
    pub slo: Vec<SloResult>,
}

impl Report {
    /// True when every SLO passed and the test was not ended early.
    pub fn passed(&self) -> bool {
        self.aborted.is_none() && self.slo.iter().all(|s| s.passed)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Counts shared by the whole test, a step and a phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Arrivals planned by the schedule.
    pub planned: u64,
    /// Requests sent.
    pub sent: u64,
    /// Answered with 2xx.
    pub ok: u64,
    /// Failed: any other status, a timeout, or a connection error.
    pub errors: u64,
    /// Arrivals not sent because `max_in_flight` were queued or in flight.
    pub dropped: u64,
    /// `get_run` arrivals before any run had been started (nothing to read).
    pub skipped: u64,
    /// errors / sent, in percent.
    pub error_rate_pct: f64,
    /// Sent per second of the measured span.
    pub throughput_rps: f64,
    /// Answers by status code, and `timeout`, `connect`, `io` for failures without one.
    pub by_status: BTreeMap<String, u64>,
    /// Latency of answered and failed requests.
    pub latency: Latency,
}

/// The whole test.
pub type Totals = Counts;

/// One step over all phases.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepStats {
    /// Step name.
    pub name: String,
    /// Step kind (`start_run`, ...).
    pub kind: String,
    /// Its counts and latency.
    #[serde(flatten)]
    pub counts: Counts,
}

/// One phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseStats {
    /// Phase name.
    pub name: String,
    /// Planned rate at its start, per second.
    pub rate_from: f64,
    /// Planned rate at its end, per second.
    pub rate_to: f64,
    /// Seconds into the test it started.
    pub start_s: f64,
    /// Its planned length in seconds.
    pub duration_s: f64,
    /// Its counts and latency.
    #[serde(flatten)]
    pub counts: Counts,
    /// Its steps.
    pub steps: Vec<StepStats>,
}

/// Runs followed from start to a final state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CompletionStats {
    /// Runs followed.
    pub followed: u64,
    /// Started with `wait: true` but not followed (more than `wait.max_tracked` at once).
    pub not_followed: u64,
    /// Finished runs by final state (`succeeded`, `failed`, `cancelled`).
    pub by_state: BTreeMap<String, u64>,
    /// Still unfinished when the wait timed out.
    pub unfinished: u64,
    /// Server-measured created -> finished, from the run's own timestamps (ms).
    pub latency: Latency,
    /// Client-observed: intended start -> the poll that saw it finished (ms; includes up to
    /// one poll interval).
    pub observed_latency: Latency,
    /// `GET /v1/runs/{id}` polls made to follow them (not in the step figures).
    pub polls: u64,
}

/// One second of the test.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Second since the start.
    pub t_s: u32,
    /// Phase index at that second.
    pub phase: usize,
    /// Requests completed in that second (by intended send time).
    pub sent: u64,
    /// Of which failed.
    pub errors: u64,
    /// Dropped arrivals.
    pub dropped: u64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 99th percentile latency (ms).
    pub p99_ms: f64,
    /// Largest latency (ms).
    pub max_ms: f64,
}

/// The server's `/metrics`, sampled during the test.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerStats {
    /// Why there are no samples (e.g. `/metrics` answered 404), if there are none.
    pub note: Option<String>,
    /// One sample per scrape.
    pub samples: Vec<ServerSample>,
}

/// One scrape of `/metrics`; a series the server does not expose is `None`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerSample {
    /// Seconds since the test started.
    pub t_s: f64,
    /// Sum of `weft_queue_depth` (ready tasks) over queues.
    pub queue_depth: Option<f64>,
    /// Sum of `weft_queue_running` over queues.
    pub queue_running: Option<f64>,
    /// `weft_attempts_inflight`.
    pub attempts_inflight: Option<f64>,
    /// `weft_http_requests_inflight`.
    pub http_inflight: Option<f64>,
    /// `process_cpu_seconds_total`.
    pub cpu_seconds: Option<f64>,
    /// `process_resident_memory_bytes`.
    pub rss_bytes: Option<f64>,
}

/// The generator's own timing: how late requests went out relative to their plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GeneratorStats {
    /// Connections used.
    pub connections: usize,
    /// The in-flight cap.
    pub max_in_flight: usize,
    /// Send lag: intended send time -> request handed to its connection (ms). Large values
    /// mean the generator (or the connection pool) could not keep up with the plan.
    pub send_lag: Latency,
    /// The schedule thread's part of the send lag: due time -> arrival queued (ms). The
    /// rest of the send lag is the wait for a free connection task.
    #[serde(default)]
    pub schedule_lag: Latency,
    /// Requests whose send lag exceeded [`crate::generator::LATE_AFTER`].
    pub late: u64,
    /// Connections (re)opened.
    pub connects: u64,
}
