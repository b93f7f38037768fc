//! Scenario validation: every impossible or unknown input is refused before any traffic,
//! with an error naming the field.

use weft_loadtest::{LoadtestError, Scenario};

fn err(yaml: &str) -> (String, String) {
    match Scenario::from_yaml(yaml) {
        Err(LoadtestError::Scenario { path, message }) => (path, message),
        other => panic!("expected a scenario error for\n{yaml}\ngot {other:?}"),
    }
}

const STEPS: &str = "steps: [{kind: start_run, flow: hello, wait: true}, {kind: get_run}]\n";

#[test]
fn a_full_scenario_parses_with_defaults_filled_in() {
    let s = Scenario::from_yaml(&format!(
        "name: basic\n{STEPS}phases:\n  - {{name: ramp, from: 10, to: 100, duration: 60s}}\n  - {{rate: 100, duration: 5m}}\nslo: [\"p95 < 200ms\", \"start_run.p99 < 50ms\", \"errors < 1%\", \"completion.p95 < 5s\"]\n"
    ))
    .unwrap();
    assert_eq!(s.steps[0].name, "start_run");
    assert_eq!(s.phases[1].name, "phase-2");
    assert_eq!(s.connections, weft_loadtest::scenario::DEFAULT_CONNECTIONS);
    assert_eq!(s.total_duration().as_secs(), 360);
    assert_eq!(s.flows(), vec!["hello".to_string()]);
    assert_eq!(s.slo.len(), 4);
}

#[test]
fn unknown_fields_are_named_with_their_path() {
    let (path, msg) = err(&format!(
        "{STEPS}phases: [{{rate: 5, duration: 1s, burst: 3}}]"
    ));
    assert_eq!(path, "phases[0].burst");
    assert!(
        msg.contains("unknown field `burst`") && msg.contains("duration"),
        "{msg}"
    );
    let (path, msg) =
        err("steps: [{kind: start_run, flw: hello}]\nphases: [{rate: 5, duration: 1s}]");
    assert_eq!(path, "steps[0].flw");
    assert!(msg.contains("unknown field `flw`"), "{msg}");
    let (path, _) = err(&format!(
        "{STEPS}phases: [{{rate: 5, duration: 1s}}]\nthreads: 4"
    ));
    assert_eq!(path, "threads");
    let (path, msg) = err("steps: [{kind: fetch}]\nphases: [{rate: 5, duration: 1s}]");
    assert_eq!(path, "steps[0].kind");
    assert!(msg.contains("start_run"), "{msg}");
    // A field the kind does not use.
    let (path, msg) = err(
        "steps: [{kind: get_run, limit: 5}, {kind: start_run, flow: f}]\nphases: [{rate: 5, duration: 1s}]",
    );
    assert_eq!(path, "steps[0].limit");
    assert!(msg.contains("not used by a get_run step"), "{msg}");
}

#[test]
fn impossible_phases_are_refused() {
    let cases = [
        ("{rate: -5, duration: 10s}", "phases[0].rate", "within 0"),
        (
            "{rate: 5, duration: 0s}",
            "phases[0].duration",
            "longer than zero",
        ),
        (
            "{from: 0, to: 0, duration: 10s}",
            "phases[0].to",
            "zero for the whole phase",
        ),
        (
            "{rate: 0, duration: 10s}",
            "phases[0].rate",
            "zero for the whole phase",
        ),
        (
            "{from: 10, duration: 10s}",
            "phases[0].rate",
            "needs `rate`",
        ),
        (
            "{rate: 5, from: 1, to: 2, duration: 10s}",
            "phases[0].rate",
            "not both",
        ),
        (
            "{rate: 2000000, duration: 10s}",
            "phases[0].rate",
            "within 0",
        ),
        (
            "{rate: 0.01, duration: 5s}",
            "phases[0].duration",
            "sends no request",
        ),
        (
            "{rate: 5, duration: soon}",
            "phases[0].duration",
            "not a duration",
        ),
    ];
    for (phase, want_path, want) in cases {
        let (path, msg) = err(&format!("{STEPS}phases: [{phase}]"));
        assert_eq!(path, want_path, "{phase}: {msg}");
        assert!(msg.contains(want), "{phase}: {msg}");
    }
    let (path, _) = err(&format!("{STEPS}phases: []"));
    assert_eq!(path, "phases");
}

#[test]
fn absolute_urls_and_other_hosts_are_refused() {
    for bad in [
        "http://evil.example/x",
        "//evil.example/x",
        "health",
        "/a b",
        "/x@evil",
    ] {
        let (path, msg) = err(&format!(
            "steps: [{{kind: request, path: \"{bad}\"}}]\nphases: [{{rate: 5, duration: 1s}}]"
        ));
        assert_eq!(path, "steps[0].path", "{bad}");
        assert!(msg.contains(bad.split(' ').next().unwrap()), "{msg}");
    }
    assert!(
        Scenario::from_yaml(
            "steps: [{kind: request, path: /health}]\nphases: [{rate: 5, duration: 1s}]"
        )
        .is_ok()
    );
}

#[test]
fn steps_and_slos_are_checked_against_each_other() {
    let (path, msg) = err("steps: [{kind: get_run}]\nphases: [{rate: 5, duration: 1s}]");
    assert_eq!(path, "steps");
    assert!(msg.contains("needs a start_run step"), "{msg}");
    let (path, msg) = err(&format!(
        "{STEPS}phases: [{{rate: 5, duration: 1s}}]\nslo: [\"nosuch.p99 < 5ms\"]"
    ));
    assert_eq!(path, "slo[0]");
    assert!(
        msg.contains("names no step or phase") && msg.contains("start_run"),
        "{msg}"
    );
    let (path, msg) = err(&format!(
        "{STEPS}phases: [{{rate: 5, duration: 1s}}]\nslo: [\"p99 < 5\"]"
    ));
    assert_eq!(path, "slo[0]");
    assert!(msg.contains("needs a unit"), "{msg}");
    let (path, _) = err("steps: [{kind: start_run}]\nphases: [{rate: 5, duration: 1s}]");
    assert_eq!(path, "steps[0].flow");
    let (path, _) =
        err("steps: [{kind: start_run, flow: f, weight: 0}]\nphases: [{rate: 5, duration: 1s}]");
    assert_eq!(path, "steps[0].weight");
    let (path, _) = err(
        "connections: 10\nmax_in_flight: 5\nsteps: [{kind: request, path: /}]\nphases: [{rate: 5, duration: 1s}]",
    );
    assert_eq!(path, "max_in_flight");
}

#[test]
fn the_quick_scenario_is_valid() {
    let s = Scenario::quick(
        "hello",
        20.0,
        std::time::Duration::from_secs(5),
        &["p95 < 500ms", "errors < 1%"],
    )
    .unwrap();
    assert_eq!(s.flows(), vec!["hello".to_string()]);
    assert!(Scenario::quick("hello", 20.0, std::time::Duration::from_secs(5), &["p95 <"]).is_err());
}
