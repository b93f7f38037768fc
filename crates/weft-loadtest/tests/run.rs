//! The generator against real HTTP servers on loopback: arrival rate, latency measured from
//! the intended send time, pre-flight refusals, early end on a failing target, no traffic
//! to any other address, SLO verdicts, baselines and the HTML report.

mod common;

use common::{TestServer, fake_weft, reply};
use std::time::{Duration, Instant};
use weft_loadtest::html::{Check, Section};
use weft_loadtest::{LoadtestError, RunOptions, Scenario, Target, baseline, html};

fn scenario(yaml: &str) -> Scenario {
    Scenario::from_yaml(yaml).unwrap()
}

async fn run(url: &str, s: &Scenario) -> Result<weft_loadtest::Report, LoadtestError> {
    weft_loadtest::run(&Target::new(url, None).unwrap(), s, &RunOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_follow_the_plan_and_every_step_is_measured() {
    let server = fake_weft(Duration::ZERO).await;
    let s = scenario(
        "steps:\n  - {kind: start_run, flow: hello, weight: 2, wait: true, input: {user: \"u-{{n}}\"}}\n  - {kind: get_run}\n  - {kind: list_runs, flow: hello}\nphases:\n  - {name: ramp, from: 50, to: 150, duration: 1s}\n  - {name: flat, rate: 200, duration: 1s}\nslo: [\"errors < 1%\", \"p99 < 5s\", \"completion.p50 < 1s\"]\n",
    );
    let r = run(&server.url, &s).await.unwrap();
    // Planned 100 + 200 arrivals; all are sent or (only get_run before the first start) skipped.
    assert!(
        (295..=305).contains(&r.totals.planned),
        "{}",
        r.totals.planned
    );
    assert_eq!(
        r.totals.sent + r.totals.skipped + r.totals.dropped,
        r.totals.planned
    );
    assert_eq!(r.totals.errors, 0, "{:?}", r.totals.by_status);
    let runs_started = server
        .log
        .lock()
        .iter()
        .filter(|(m, p)| m == "POST" && p == "/v1/runs")
        .count() as u64;
    assert_eq!(
        runs_started, r.steps[0].counts.sent,
        "every start_run reached the server once"
    );
    assert!(server.count("/v1/runs?limit=20&flow=hello") > 0);
    assert_eq!(
        r.phases[0].counts.planned + r.phases[1].counts.planned,
        r.totals.planned
    );
    assert!(r.phases[1].counts.planned > r.phases[0].counts.planned);
    let c = r.completion.as_ref().unwrap();
    assert_eq!(c.by_state.get("succeeded").copied(), Some(c.followed));
    assert!(
        (41.9..42.1).contains(&c.latency.p50),
        "server-side created->finished from the run's timestamps: {}",
        c.latency.p50
    );
    assert!(!r.server.samples.is_empty() && r.server.samples[0].queue_depth == Some(5.0));
    assert!(r.passed(), "{:?}", r.slo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_from_the_intended_send_time_when_the_server_is_slow() {
    // One connection, 100 ms per answer, 40 arrivals/s for 1 s: the server can answer 10/s,
    // so arrivals queue. A closed-loop client would report ~100 ms; the truth is that later
    // arrivals waited up to ~3 s.
    let server = fake_weft(Duration::from_millis(100)).await;
    let s = scenario(
        "connections: 1\nmax_in_flight: 1000\nsteps: [{kind: request, path: /v1/ping}]\nphases: [{rate: 40, duration: 1s}]\nslo: [\"p99 < 150ms\"]\n",
    );
    let r = run(&server.url, &s).await.unwrap();
    assert_eq!(r.totals.sent, 40);
    assert!(
        r.totals.latency.p50 >= 1000.0,
        "p50 {} ms hides the queueing",
        r.totals.latency.p50
    );
    assert!(
        r.totals.latency.max >= 3000.0,
        "max {} ms",
        r.totals.latency.max
    );
    assert!(
        r.generator.send_lag.max >= 2500.0,
        "the send lag shows the requests waited: {:?}",
        r.generator
    );
    assert!(!r.passed(), "p99 < 150ms must fail");
    assert!(!r.slo[0].passed && r.slo[0].measured.unwrap() > 1000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_beyond_max_in_flight_are_dropped_and_counted() {
    let server = fake_weft(Duration::from_millis(300)).await;
    let s = scenario(
        "connections: 2\nmax_in_flight: 4\nsteps: [{kind: request, path: /x}]\nphases: [{rate: 50, duration: 1s}]\nslo: [\"dropped < 1%\"]\n",
    );
    let r = run(&server.url, &s).await.unwrap();
    assert_eq!(r.totals.planned, 50);
    assert!(r.totals.dropped >= 30, "dropped {}", r.totals.dropped);
    assert_eq!(r.totals.sent + r.totals.dropped, 50);
    assert!(!r.passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_flows_and_down_targets_are_refused_before_any_traffic() {
    let server = fake_weft(Duration::ZERO).await;
    let s =
        scenario("steps: [{kind: start_run, flow: nosuch}]\nphases: [{rate: 10, duration: 1s}]");
    match run(&server.url, &s).await {
        Err(LoadtestError::Scenario { path, message }) => {
            assert_eq!(path, "steps[0].flow");
            assert!(message.contains("\"nosuch\" does not exist"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count("/v1/runs"), 0, "no run was started");
    // Nobody listens on the port of a dropped listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let began = Instant::now();
    let e = run(&format!("http://127.0.0.1:{port}"), &s)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LoadtestError::Preflight(m) if m.contains("unreachable")),
        "{e}"
    );
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_starts_failing_ends_the_test_early_with_a_summary() {
    let server = TestServer::start(|_, p| {
        if p == "/health" {
            reply(200, "ok")
        } else {
            reply(503, "down")
        }
    })
    .await;
    let s = scenario(
        "abort_after: 1s\nsteps: [{kind: request, path: /work}]\nphases: [{rate: 50, duration: 60s}]",
    );
    let began = Instant::now();
    let r = run(&server.url, &s).await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "took {:?}",
        began.elapsed()
    );
    let why = r.aborted.as_deref().expect("ended early");
    assert!(
        why.contains("no request succeeded") && why.contains("503 x"),
        "{why}"
    );
    assert!(!r.passed());
    assert!(r.totals.planned < 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_so_no_other_address_gets_traffic() {
    let other = TestServer::start(|_, _| reply(200, "ok")).await;
    let elsewhere = format!("{}/stolen", other.url);
    let server = TestServer::start(move |_, p| {
        if p == "/health" {
            reply(200, "ok")
        } else {
            let mut r = reply(302, "");
            r.location = Some(elsewhere.clone());
            r
        }
    })
    .await;
    let s = scenario("steps: [{kind: request, path: /go}]\nphases: [{rate: 20, duration: 1s}]");
    let r = run(&server.url, &s).await.unwrap();
    assert_eq!(r.totals.by_status.get("302").copied(), Some(20));
    assert_eq!(r.totals.errors, 20, "a redirect is not a success");
    assert_eq!(other.log.lock().len(), 0, "the redirect target got traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baselines_round_trip_and_compare_marks_regressions_and_html_has_charts() {
    let fast = fake_weft(Duration::ZERO).await;
    let slow = fake_weft(Duration::from_millis(30)).await;
    let s = scenario(
        "name: cmp\nsteps: [{kind: start_run, flow: hello}, {kind: list_runs}]\nphases: [{name: steady, rate: 50, duration: 1s}]",
    );
    let base = run(&fast.url, &s).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = baseline::save(dir.path(), "main", &base).unwrap();
    assert!(path.ends_with("main.json"));
    let loaded = baseline::load(dir.path(), "main").unwrap();
    assert_eq!(loaded.totals.sent, base.totals.sent);
    assert!(baseline::load(dir.path(), "nope").is_err());
    assert!(baseline::save(dir.path(), "../x", &base).is_err());

    let same = baseline::compare("main", &loaded, &base);
    assert_eq!(same.regressions, 0);
    let worse = run(&slow.url, &s).await.unwrap();
    let cmp = baseline::compare("main", &loaded, &worse);
    assert!(
        cmp.rows
            .iter()
            .any(|r| r.scope == "step start_run" && r.metric == "p50_ms" && r.regression),
        "{}",
        cmp.render_table()
    );
    assert!(cmp.render_table().contains("REGRESSION"));

    let page = html::render(
        &worse,
        &[Section {
            title: "Checklist <x>".into(),
            intro: None,
            checks: vec![Check {
                name: "health".into(),
                passed: Some(true),
                detail: "ok".into(),
            }],
        }],
    );
    assert!(page.starts_with("<!doctype html>"));
    assert!(
        page.matches("<svg").count() >= 3,
        "throughput, latency and server charts"
    );
    assert!(page.contains("<polyline") && page.contains("steady"));
    assert!(
        page.contains("Checklist &lt;x&gt;"),
        "extra sections are escaped"
    );
    assert!(
        !page.contains("<script") && !page.contains("https://"),
        "self-contained, offline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_goes_with_every_request_including_preflight_and_scrapes() {
    let server = fake_weft(Duration::ZERO).await;
    let s = scenario(
        "steps: [{kind: start_run, flow: hello, wait: true}]\nphases: [{rate: 20, duration: 1s}]",
    );
    let target = Target::new(&server.url, Some("weft_k1.secret".into())).unwrap();
    let r = weft_loadtest::run(&target, &s, &RunOptions::default())
        .await
        .unwrap();
    assert!(r.totals.sent >= 19);
    let auth = server.auth.lock().clone();
    assert!(
        auth.len() as u64 > r.totals.sent,
        "pre-flight, steps, polls and scrapes"
    );
    assert!(
        auth.iter().all(|a| a == "Bearer weft_k1.secret"),
        "{auth:?}"
    );
}
