//! The breaker state machine under a fake clock (times are plain milliseconds).

use super::*;

const S: Millis = 1_000;

fn policy() -> BreakerPolicy {
    BreakerPolicy {
        failure_threshold: 3,
        window: Duration::from_secs(10),
        reset_timeout: Duration::from_secs(5),
        max_reset_timeout: Duration::from_secs(18),
        half_open_probes: 1,
        fail_fast: false,
    }
}

fn fail(b: &mut Breaker, at: Millis) -> Option<CircuitState> {
    b.record(at, false, Verdict::Unhealthy)
}

#[test]
fn opens_at_the_threshold_within_the_window() {
    let mut b = Breaker::new(policy());
    assert_eq!(fail(&mut b, 0), None);
    assert_eq!(fail(&mut b, S), None);
    assert_eq!(b.state(2 * S), CircuitState::Closed);
    assert_eq!(fail(&mut b, 2 * S), Some(CircuitState::Open));
    assert_eq!(b.admit(3 * S).0, Admission::Rejected { until: 7 * S });
    assert_eq!(b.opened_at(), Some(2 * S));
}

#[test]
fn failures_older_than_the_window_do_not_count() {
    let mut b = Breaker::new(policy());
    fail(&mut b, 0);
    fail(&mut b, S);
    // 10 s later the first has left the window: two failures, not three.
    assert_eq!(fail(&mut b, 10 * S), None);
    assert_eq!(b.failures_in_window(10 * S), 2);
    assert_eq!(b.state(10 * S), CircuitState::Closed);
    assert_eq!(fail(&mut b, 10 * S + 1), Some(CircuitState::Open));
}

#[test]
fn healthy_and_neutral_results_do_not_count_as_failures() {
    let mut b = Breaker::new(policy());
    for i in 0..10 {
        assert_eq!(b.record(i, false, Verdict::Healthy), None);
        assert_eq!(b.record(i, false, Verdict::Neutral), None);
    }
    assert_eq!(b.failures_in_window(10), 0);
}

#[test]
fn open_then_half_open_probe_success_closes() {
    let mut b = Breaker::new(policy());
    for i in 0..3 {
        fail(&mut b, i);
    }
    assert_eq!(b.admit(4_999).0, Admission::Rejected { until: 5_002 });
    let (admission, changed) = b.admit(5_002);
    assert_eq!(admission, Admission::Allowed { probe: true });
    assert_eq!(changed, Some(CircuitState::HalfOpen));
    // One probe at a time: the next caller waits a short while.
    assert_eq!(b.admit(5_003).0, Admission::Rejected { until: 6_003 });
    // A late failure of a call admitted before opening does not decide anything.
    assert_eq!(fail(&mut b, 5_004), None);
    assert_eq!(
        b.record(5_010, true, Verdict::Healthy),
        Some(CircuitState::Closed)
    );
    assert_eq!(b.admit(5_011).0, Admission::Allowed { probe: false });
    assert_eq!(
        b.failures_in_window(5_011),
        0,
        "closing starts a fresh count"
    );
}

#[test]
fn failed_probes_double_the_open_time_up_to_the_cap() {
    let mut b = Breaker::new(policy());
    for i in 0..3 {
        fail(&mut b, i);
    }
    let mut now = 2;
    let mut opens = Vec::new();
    for _ in 0..4 {
        let until = b.reopens_at().unwrap();
        opens.push(until - now);
        now = until;
        assert_eq!(b.admit(now).0, Admission::Allowed { probe: true });
        assert_eq!(
            b.record(now, true, Verdict::Unhealthy),
            Some(CircuitState::Open)
        );
    }
    assert_eq!(
        opens,
        vec![5 * S, 10 * S, 18 * S, 18 * S],
        "x2, capped at 18 s"
    );
    // A success resets the open time to reset_timeout for the next opening.
    let until = b.reopens_at().unwrap();
    b.admit(until);
    b.record(until, true, Verdict::Healthy);
    for i in 0..3 {
        fail(&mut b, until + i);
    }
    assert_eq!(b.reopens_at(), Some(until + 2 + 5 * S));
}

#[test]
fn abandoned_probe_frees_its_slot() {
    let mut b = Breaker::new(BreakerPolicy {
        half_open_probes: 2,
        ..policy()
    });
    for i in 0..3 {
        fail(&mut b, i);
    }
    assert_eq!(b.admit(6 * S).0, Admission::Allowed { probe: true });
    assert_eq!(b.admit(6 * S).0, Admission::Allowed { probe: true });
    assert!(matches!(b.admit(6 * S).0, Admission::Rejected { .. }));
    b.release_probe();
    assert_eq!(b.admit(6 * S).0, Admission::Allowed { probe: true });
}

#[test]
fn registry_defers_while_open_and_reports_each_target() {
    let r = Arc::new(Breakers::default());
    let p = policy();
    for i in 0..3 {
        match r.admit("a:80", Some(&p), i) {
            Gate::Go(permit) => permit.finish(Verdict::Unhealthy, Duration::ZERO, i),
            Gate::Open { .. } => panic!("closed breaker refused a call"),
        }
    }
    assert!(matches!(r.admit("a:80", Some(&p), 10), Gate::Open { until } if until == 5_002));
    assert!(
        matches!(r.admit("a:80", None, 10), Gate::Go(_)),
        "a node without a breaker is not gated"
    );
    assert!(matches!(r.admit("b:80", Some(&p), 10), Gate::Go(_)));
    let list = r.list(10);
    let names: Vec<(&str, CircuitState)> =
        list.iter().map(|b| (b.target.as_str(), b.state)).collect();
    assert_eq!(
        names,
        vec![("a:80", CircuitState::Open), ("b:80", CircuitState::Closed)]
    );
    assert_eq!(list[0].next_probe_at, Some(5_002));
    assert_eq!(list[0].opened_at, Some(2));

    // A probe dropped unfinished (cancelled attempt) frees the slot for the next caller.
    let probe = r.admit("a:80", Some(&p), 5_002);
    assert!(matches!(probe, Gate::Go(_)));
    assert!(matches!(
        r.admit("a:80", Some(&p), 5_003),
        Gate::Open { .. }
    ));
    drop(probe);
    assert!(matches!(r.admit("a:80", Some(&p), 5_004), Gate::Go(_)));
}
