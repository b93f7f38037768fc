//! `weft loadtest` end to end: the real binary against a real `weft up` serving the example
//! flows: a passing run with reports and a baseline, a failing SLO and a comparison, an
//! unknown flow and an unreachable target refused before any traffic.

mod common;

use common::{Server, text, weft};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

const SCENARIO: &str = r#"name: e2e
connections: 8
steps:
  - {name: start, kind: start_run, flow: hello, weight: 3, input: {name: "u-{{n}}", vip: true}, wait: true}
  - {name: get, kind: get_run, weight: 2}
  - {name: list, kind: list_runs, flow: hello}
phases:
  - {name: ramp, from: 10, to: 40, duration: 1s}
  - {name: steady, rate: 40, duration: 2s}
slo: ["errors < 1%", "p95 < 2s", "completion.p95 < 20s"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn loadtest_drives_a_real_server_and_reports_pass_fail_and_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let flows = examples().join("flows");
    let server = Server::start(
        &dir.path().join("data"),
        &["--flows", flows.to_str().unwrap()],
    )
    .await;
    let scenario = dir.path().join("s.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let (s, html, bl) = (
        scenario.to_str().unwrap(),
        dir.path().join("r.html"),
        dir.path().join("bl"),
    );
    let base_args = [
        "loadtest",
        s,
        "--url",
        &server.url,
        "--baseline-dir",
        bl.to_str().unwrap(),
        "-o",
        "json",
    ];

    let mut args = base_args.to_vec();
    args.extend(["--html", html.to_str().unwrap(), "--save-baseline", "first"]);
    let out = weft(&args).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["totals"]["errors"], 0, "{}", r["totals"]);
    assert!(r["totals"]["planned"].as_u64().unwrap() >= 100);
    let started = r["steps"][0]["sent"].as_u64().unwrap();
    let c = &r["completion"];
    assert_eq!(c["followed"].as_u64(), Some(started));
    assert_eq!(
        c["by_state"]["succeeded"].as_u64(),
        Some(started),
        "every started run finished: {c}"
    );
    assert!(c["latency"]["p50"].as_f64().unwrap() > 0.0);
    let samples = r["server"]["samples"].as_array().unwrap();
    assert!(
        samples.iter().any(|s| s["queue_depth"].is_number()),
        "scraped /metrics: {}",
        r["server"]
    );
    assert!(
        r["slo"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["passed"] == true)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("PASS"));
    assert!(bl.join("first.json").exists());
    // The runs really exist on the server.
    let listed = weft(&[
        "run",
        "list",
        "--url",
        &server.url,
        "--flow",
        "hello",
        "-o",
        "json",
    ])
    .await;
    assert!(text(&listed).0.contains("\"hello\""));

    // An SLO nothing can meet, compared with the baseline: exit 1, verdicts and comparison.
    let strict = dir.path().join("strict.yaml");
    std::fs::write(&strict, SCENARIO.replace("\"p95 < 2s\"", "\"p50 < 1us\"")).unwrap();
    let mut args = base_args.to_vec();
    args[1] = strict.to_str().unwrap();
    args.extend(["--compare", "first"]);
    let out = weft(&args).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let verdict = v["report"]["slo"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slo"] == "p50 < 1us")
        .unwrap()
        .clone();
    assert_eq!(verdict["passed"], false);
    assert!(v["comparison"]["rows"].as_array().unwrap().len() >= 5);
    assert!(stderr.contains("1 SLO(s) failed"), "{stderr}");

    // A missing baseline is refused before any traffic.
    let mut args = base_args.to_vec();
    args.extend(["--compare", "nosuch"]);
    let out = weft(&args).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("save one first"), "{}", text(&out).1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_scenarios_and_unreachable_targets_exit_2_before_any_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let scenario = dir.path().join("s.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let s = scenario.to_str().unwrap();

    // No flow `hello` on this server.
    let out = weft(&["loadtest", s, "--url", &server.url, "--no-progress"]).await;
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("steps[0].flow") && stderr.contains("\"hello\" does not exist"),
        "{stderr}"
    );
    let runs = weft(&["run", "list", "--url", &server.url, "-o", "json"]).await;
    assert!(
        !text(&runs).0.contains("\"id\""),
        "no run was started: {}",
        text(&runs).0
    );

    // An unknown field.
    std::fs::write(
        &scenario,
        SCENARIO.replace("connections: 8", "conections: 8"),
    )
    .unwrap();
    let out = weft(&["loadtest", s, "--url", &server.url]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("conections"), "{}", text(&out).1);

    // Nobody listens there.
    std::fs::write(&scenario, SCENARIO).unwrap();
    let began = Instant::now();
    let out = weft(&[
        "loadtest",
        s,
        "--url",
        &format!("http://127.0.0.1:{}", common::free_port()),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("unreachable"), "{}", text(&out).1);
    assert!(began.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_example_scenario_is_valid_and_names_example_flows() {
    let s = weft_loadtest::Scenario::from_path(&examples().join("loadtest/basic.yaml")).unwrap();
    for flow in s.flows() {
        assert!(
            examples().join(format!("flows/{flow}.yaml")).exists(),
            "{flow}"
        );
    }
}
