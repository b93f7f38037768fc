//! `run`: pre-flight checks, then the test, then the report. Pre-flight (target answers
//! `/health`, every flow a `start_run` step names exists) happens before any load, so a
//! wrong scenario or a down target costs two requests, not a test. During the test a
//! watchdog ends it early when nothing has succeeded for `abort_after`, so an unreachable
//! or failing target ends with a summary instead of a hang.

use crate::client::{Conn, Failure};
use crate::generator::{self, Shared};
use crate::progress::{self, Progress};
use crate::recorder::Recorder;
use crate::report::{GeneratorStats, REPORT_VERSION, Report};
use crate::scenario::{Scenario, Schedule};
use crate::target::Target;
use crate::tracker::{TRACKER_CONNECTIONS, Tracker};
use crate::{LoadtestError, scrape};
use hyper::Method;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How a test is run, apart from the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Progress on stderr [default: [`Progress::Off`]].
    pub progress: Progress,
    /// Time between `/metrics` scrapes [default: 1s].
    pub scrape_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            progress: Progress::Off,
            scrape_interval: Duration::from_secs(1),
        }
    }
}

/// Runs `scenario` against `target`. An error means nothing was sent (bad scenario, target
/// down, unknown flow); a target that fails mid-test gives a report with `aborted` set.
pub async fn run(
    target: &Target,
    scenario: &Scenario,
    opts: &RunOptions,
) -> Result<Report, LoadtestError> {
    scenario.validate()?;
    let addr = target.resolve().await?;
    let target = Arc::new(target.clone());
    preflight(addr, &target, scenario).await?;
    Ok(drive(addr, target, scenario, opts).await)
}

async fn preflight(
    addr: SocketAddr,
    target: &Arc<Target>,
    scenario: &Scenario,
) -> Result<(), LoadtestError> {
    let mut conn = Conn::new(addr, target.clone());
    let base = target.base_url();
    let timeout = scenario.timeout.min(Duration::from_secs(10));
    match conn.call(Method::GET, "/health", None, timeout).await {
        Ok(a) if a.status == 200 => {}
        Ok(a) => {
            return Err(LoadtestError::Preflight(format!(
                "{base}/health answered {}; the target is not healthy, no traffic sent",
                a.status
            )));
        }
        Err(f) => {
            return Err(LoadtestError::Preflight(format!(
                "{base} is unreachable ({}) at {addr}; no traffic sent",
                describe(f)
            )));
        }
    }
    for flow in scenario.flows() {
        let at = scenario
            .steps
            .iter()
            .position(|s| s.flow.as_deref() == Some(&flow))
            .unwrap_or(0);
        match conn
            .call(Method::GET, &format!("/v1/flows/{flow}"), None, timeout)
            .await
        {
            Ok(a) if a.status == 200 => {}
            Ok(a) if a.status == 404 => {
                return Err(LoadtestError::scenario(
                    format!("steps[{at}].flow"),
                    format!(
                        "flow {flow:?} does not exist on {base}; apply it first (`weft flow apply`) or fix the name"
                    ),
                ));
            }
            Ok(a) if a.status == 401 || a.status == 403 => {
                return Err(LoadtestError::Preflight(format!(
                    "{base} refused to show flow {flow:?} ({}): give an API key with --api-key or WEFT_API_KEY",
                    a.status
                )));
            }
            Ok(a) => {
                return Err(LoadtestError::Preflight(format!(
                    "GET /v1/flows/{flow} answered {}; no traffic sent",
                    a.status
                )));
            }
            Err(f) => {
                return Err(LoadtestError::Preflight(format!(
                    "GET /v1/flows/{flow} failed: {}",
                    describe(f)
                )));
            }
        }
    }
    Ok(())
}

fn describe(f: Failure) -> &'static str {
    match f {
        Failure::Timeout => "no answer within the timeout",
        Failure::Connect => "connection refused or failed",
        Failure::Io => "connection broke",
    }
}

async fn drive(
    addr: SocketAddr,
    target: Arc<Target>,
    scenario: &Scenario,
    opts: &RunOptions,
) -> Report {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let scenario_arc = Arc::new(scenario.clone());
    // Connections open before the clock starts, so the first second is not all handshakes.
    let start = std::time::Instant::now() + Duration::from_millis(50);
    let shared = Shared::new(scenario, start);
    let tracker = Tracker::new(scenario.wait.clone(), scenario.timeout);
    let mut conns = tokio::task::JoinSet::new();
    for _ in 0..scenario.connections {
        conns.spawn(generator::connection(
            shared.clone(),
            addr,
            target.clone(),
            tracker.clone(),
        ));
    }
    let mut polls = tokio::task::JoinSet::new();
    if scenario.steps.iter().any(|s| s.wait) {
        for _ in 0..TRACKER_CONNECTIONS {
            polls.spawn(tracker.clone().poll_loop(addr, target.clone()));
        }
    }
    let scrape_stop = Arc::new(AtomicBool::new(false));
    let scraper = tokio::spawn(scrape::scrape_loop(
        addr,
        target.clone(),
        start,
        opts.scrape_interval,
        scrape_stop.clone(),
    ));
    let progress = tokio::spawn(progress::show(opts.progress, shared.clone(), scenario_arc));
    let schedule = Schedule::new(scenario);
    let local = Recorder::new(scenario);
    let dispatcher = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("weft-loadtest-schedule".into())
            .spawn(move || generator::dispatch(shared, schedule, local))
            .expect("the schedule thread starts")
    };
    let aborted = watchdog(&shared, scenario.abort_after).await;
    let _ = tokio::task::spawn_blocking(move || dispatcher.join()).await;
    while conns.join_next().await.is_some() {}
    let duration_s = shared
        .start
        .elapsed()
        .as_secs_f64()
        .min(scenario.total_duration().as_secs_f64())
        .max(0.001);
    tracker.close(aborted.is_some());
    while polls.join_next().await.is_some() {}
    scrape_stop.store(true, Ordering::SeqCst);
    let server = scraper.await.unwrap_or_default();
    let _ = progress.await;
    let built = shared.recorder.lock().build(scenario, duration_s);
    let mut report = Report {
        version: REPORT_VERSION,
        scenario: scenario.clone(),
        target: target.base_url(),
        started_at,
        duration_s,
        aborted,
        totals: built.totals,
        steps: built.steps,
        phases: built.phases,
        completion: scenario
            .steps
            .iter()
            .any(|s| s.wait)
            .then(|| tracker.stats()),
        timeline: built.timeline,
        server,
        generator: GeneratorStats {
            connections: scenario.connections,
            max_in_flight: scenario.max_in_flight,
            send_lag: built.send_lag,
            schedule_lag: built.schedule_lag,
            late: built.late,
            connects: shared.connects.load(Ordering::Relaxed),
        },
        slo: Vec::new(),
    };
    report.slo = scenario.slo.iter().map(|s| s.evaluate(&report)).collect();
    report
}

/// Waits for the schedule to finish; ends the test early (returning why) when no request
/// has succeeded for `abort_after`.
async fn watchdog(shared: &Arc<Shared>, abort_after: Duration) -> Option<String> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if shared.done.load(Ordering::SeqCst) {
            return None;
        }
        let now = shared.start.elapsed();
        let last_ok = Duration::from_micros(shared.last_ok_us.load(Ordering::Relaxed));
        let last_fail = Duration::from_micros(shared.last_fail_us.load(Ordering::Relaxed));
        // Only failures count: a quiet stretch of a slow phase is not a reason to stop.
        if last_fail > last_ok && now.saturating_sub(last_ok) >= abort_after {
            let live = shared.recorder.lock().live(now);
            let (statuses, sent) = shared.recorder.lock().status_summary();
            shared.halt();
            return Some(format!(
                "no request succeeded for {} ({} sent, {} failed: {statuses}); the test was ended early",
                humantime::format_duration(Duration::from_secs(abort_after.as_secs().max(1))),
                sent,
                live.errors,
            ));
        }
    }
}
