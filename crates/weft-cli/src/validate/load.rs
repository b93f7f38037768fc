//! The short load test of `weft validate`: `weft loadtest`'s quick scenario (start runs and
//! wait for them, read them back, list runs) against the target, judged by the SLOs given.
//! Its flow is a one-node `noop` flow applied by validate itself, so the figures measure
//! weft rather than whatever a user's flow calls.

use super::score::{Check, Status};
use crate::client::Client;
use anyhow::Context;
use serde_json::json;
use std::time::Duration;
use weft_loadtest::{Progress, Report, RunOptions, Scenario, Target};

/// The flow the load test starts.
pub const LOAD_FLOW: &str = "weft-validate";
const LOAD_YAML: &str = "name: weft-validate
description: Applied by `weft validate` for its load test; safe to delete.
nodes:
  only: {type: noop}
";

/// The load test's settings.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Arrivals per second.
    pub rate: f64,
    /// How long.
    pub duration: Duration,
    /// Objectives, e.g. `errors < 1%`.
    pub slo: Vec<String>,
}

/// Runs the load test; the verdict, and the report when traffic was sent.
pub async fn run(client: &Client, target: &Target, opts: &LoadOptions) -> (Check, Option<Report>) {
    match load(client, target, opts).await {
        Ok(report) => (verdict(&report), Some(report)),
        Err(e) => (
            Check::new(
                "load_test",
                20,
                Status::Fail,
                format!("{e:#}"),
                serde_json::Value::Null,
            ),
            None,
        ),
    }
}

async fn load(client: &Client, target: &Target, opts: &LoadOptions) -> anyhow::Result<Report> {
    client
        .send(
            client
                .request(reqwest::Method::POST, &["v1", "flows"])
                .header("content-type", "application/yaml")
                .body(LOAD_YAML),
        )
        .await
        .context("cannot apply the load test's flow")?;
    let slo: Vec<&str> = opts.slo.iter().map(String::as_str).collect();
    let scenario = Scenario::quick(LOAD_FLOW, opts.rate, opts.duration, &slo).context("--slo")?;
    let run_opts = RunOptions {
        progress: Progress::Off,
        ..RunOptions::default()
    };
    weft_loadtest::run(target, &scenario, &run_opts)
        .await
        .context("the load test could not start")
}

/// Pass when the test ran to its end, every SLO held and every run it waited for succeeded.
pub fn verdict(r: &Report) -> Check {
    let t = &r.totals;
    let completion = r.completion.as_ref();
    let data = json!({
        "rate": r.scenario.phases.first().and_then(|p| p.rate),
        "duration_s": (r.duration_s * 10.0).round() / 10.0,
        "sent": t.sent, "ok": t.ok, "errors": t.errors, "dropped": t.dropped,
        "throughput_rps": (t.throughput_rps * 10.0).round() / 10.0,
        "latency_ms": {"p50": t.latency.p50, "p95": t.latency.p95, "p99": t.latency.p99, "max": t.latency.max},
        "runs_by_state": completion.map(|c| &c.by_state),
        "runs_unfinished": completion.map(|c| c.unfinished),
        "completion_ms": completion.map(|c| json!({"p50": c.latency.p50, "p99": c.latency.p99})),
        "slo": r.slo.iter().map(|s| json!({"slo": s.slo, "measured": s.measured, "passed": s.passed})).collect::<Vec<_>>(),
    });
    let failed_slo: Vec<&str> = r
        .slo
        .iter()
        .filter(|s| !s.passed)
        .map(|s| s.slo.as_str())
        .collect();
    let not_succeeded: u64 = completion
        .map(|c| {
            c.unfinished
                + c.by_state
                    .iter()
                    .filter(|(s, _)| *s != "succeeded")
                    .map(|(_, n)| n)
                    .sum::<u64>()
        })
        .unwrap_or(0);
    let figures = format!(
        "{} requests at {:.0}/s, {} errors, p50 {:.1} ms, p99 {:.1} ms",
        t.sent, t.throughput_rps, t.errors, t.latency.p50, t.latency.p99
    );
    let (status, summary) = if let Some(why) = &r.aborted {
        (
            Status::Fail,
            format!("the load test was stopped: {why} ({figures})"),
        )
    } else if not_succeeded > 0 {
        (
            Status::Fail,
            format!("{not_succeeded} of the runs it started did not succeed in time ({figures})"),
        )
    } else if !failed_slo.is_empty() {
        (
            Status::Fail,
            format!("SLO missed: {} ({figures})", failed_slo.join(", ")),
        )
    } else {
        (
            Status::Pass,
            format!("{figures}; every run succeeded and every SLO held"),
        )
    };
    Check::new("load_test", 20, status, summary, data)
}
