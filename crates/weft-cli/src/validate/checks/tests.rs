use super::*;
use crate::validate::facts::Facts;

fn member(id: &str, roles: &[&str], queues: &[&str], pool: u32, skew: Option<i64>) -> Member {
    serde_json::from_value(json!({
        "id": id, "roles": roles, "pool_size": pool, "clock_skew_ms": skew,
        "queues": queues.iter().map(|q| json!({"name": q})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn cluster(members: Vec<Member>, leader: Option<&str>, max: u32, reserved: u32) -> Cluster {
    let mut c: Cluster = serde_json::from_value(json!({
        "node_id": "gw-1", "mode": "cluster", "now_ms": 0,
        "leader": leader.map(|l| json!({"node_id": l})),
        "store": {"kind": "postgres", "max_connections": max, "reserved_connections": reserved},
    }))
    .unwrap();
    c.members = Some(members);
    c
}

fn facts(c: Cluster, flows: Vec<FlowQueues>, offset_ms: i64) -> Facts {
    Facts {
        unreachable: None,
        not_ready: Vec::new(),
        cluster: Ok(c),
        clock: Some(ClockProbe {
            offset_ms,
            uncertainty_ms: 2,
        }),
        flows: Ok(flows),
    }
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks.iter().find(|c| c.name == name).unwrap()
}

fn healthy() -> Vec<Member> {
    vec![
        member("gw-1", &["gateway"], &[], 11, Some(3)),
        member("orch-1", &["orchestrator"], &[], 11, Some(-4)),
        member("w-1", &["worker"], &["default"], 11, Some(1)),
        member("w-2", &["worker"], &["default", "email"], 11, Some(0)),
    ]
}

#[test]
fn a_healthy_cluster_passes_every_check() {
    let flows = vec![FlowQueues {
        flow: "f".into(),
        queues: vec!["default".into(), "email".into()],
    }];
    let checks = all(
        "http://gw",
        &facts(cluster(healthy(), Some("orch-1"), 100, 3), flows, 10),
    );
    for c in &checks {
        assert_eq!(c.status, Status::Pass, "{c:?}");
    }
    assert_eq!(
        checks.iter().map(|c| c.name).collect::<Vec<_>>(),
        [
            "reachable",
            "nodes_ready",
            "queues_served",
            "pool_fits",
            "leader",
            "clocks"
        ]
    );
    assert_eq!(find(&checks, "pool_fits").data["total"], 44);
    assert_eq!(find(&checks, "pool_fits").data["usable_connections"], 97);
}

#[test]
fn a_queue_no_worker_serves_fails_and_names_the_flow() {
    let mut members = healthy();
    members.pop();
    let flows = vec![
        FlowQueues {
            flow: "mail".into(),
            queues: vec!["email".into()],
        },
        FlowQueues {
            flow: "ok".into(),
            queues: vec!["default".into()],
        },
    ];
    assert_eq!(
        unserved_queues(&flows, &members),
        BTreeMap::from([("email".to_string(), vec!["mail".to_string()])])
    );
    let checks = all(
        "http://gw",
        &facts(cluster(members, Some("orch-1"), 100, 3), flows, 0),
    );
    let c = find(&checks, "queues_served");
    assert_eq!(c.status, Status::Fail);
    assert!(c.summary.contains("email (used by mail)"), "{}", c.summary);
}

#[test]
fn pools_are_compared_with_max_connections_minus_the_reserved_ones() {
    assert_eq!(usable_connections(100, 3), 97);
    assert_eq!(usable_connections(2, 3), 0);
    assert_eq!(pool_status(77, 97), Status::Pass);
    assert_eq!(pool_status(78, 97), Status::Warn); // 78 > 0.8 * 97 = 77.6
    assert_eq!(pool_status(97, 97), Status::Warn);
    assert_eq!(pool_status(98, 97), Status::Fail);
    // Four pools of 11 do not fit a server taking 40 connections.
    let checks = all(
        "http://gw",
        &facts(cluster(healthy(), Some("orch-1"), 43, 3), vec![], 0),
    );
    let c = find(&checks, "pool_fits");
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.summary.contains("44 connections but the server takes 40"),
        "{}",
        c.summary
    );
}

#[test]
fn clocks_warn_then_fail_as_they_drift_apart() {
    assert_eq!(clock_status(250), Status::Pass);
    assert_eq!(clock_status(-251), Status::Warn);
    assert_eq!(clock_status(1_000), Status::Warn);
    assert_eq!(clock_status(-1_001), Status::Fail);
    let mut members = healthy();
    members[2].clock_skew_ms = Some(-1_500);
    let checks = all(
        "http://gw",
        &facts(cluster(members, Some("orch-1"), 100, 3), vec![], 0),
    );
    let c = find(&checks, "clocks");
    assert_eq!(c.status, Status::Fail);
    assert!(c.summary.contains("worst w-1 at -1500 ms"), "{}", c.summary);
    // The answering node alone being 600 ms off this machine warns.
    let checks = all(
        "http://gw",
        &facts(cluster(healthy(), Some("orch-1"), 100, 3), vec![], 600),
    );
    assert_eq!(find(&checks, "clocks").status, Status::Warn);
}

#[test]
fn a_cluster_without_a_leader_fails() {
    let checks = all(
        "http://gw",
        &facts(cluster(healthy(), None, 100, 3), vec![], 0),
    );
    assert_eq!(find(&checks, "leader").status, Status::Fail);
}

#[test]
fn an_unreachable_target_fails_once_and_skips_the_rest() {
    let f = Facts {
        unreachable: Some("connection refused".into()),
        not_ready: Vec::new(),
        cluster: Err("not read".into()),
        clock: None,
        flows: Err("not read".into()),
    };
    let checks = all("http://127.0.0.1:1", &f);
    assert_eq!(checks[0].status, Status::Fail);
    assert!(checks[0].summary.contains("connection refused"));
    assert!(checks[1..].iter().all(|c| c.status == Status::Skip));
}

#[test]
fn a_worker_serving_every_queue_serves_queues_it_has_not_met_yet() {
    let mut members = healthy();
    members.truncate(3); // w-1 lists only `default`
    let flows = vec![FlowQueues {
        flow: "mail".into(),
        queues: vec!["email".into()],
    }];
    assert_eq!(unserved_queues(&flows, &members).len(), 1);
    members[2].all_queues = true;
    assert!(unserved_queues(&flows, &members).is_empty());
    // A gateway never serves a queue, whatever it says.
    let mut gateway_only = vec![member("gw-1", &["gateway"], &["email"], 11, None)];
    gateway_only[0].all_queues = true;
    assert_eq!(unserved_queues(&flows, &gateway_only).len(), 1);
}

#[test]
fn a_member_that_missed_three_beats_fails_readiness() {
    let mut members = healthy();
    members[2].heartbeat_age_ms = 16_000;
    let mut c = cluster(members, Some("orch-1"), 100, 3);
    c.lease_ms = Some(15_000);
    let checks = all("http://gw", &facts(c.clone(), vec![], 0));
    let ready = find(&checks, "nodes_ready");
    assert_eq!(ready.status, Status::Fail);
    assert!(
        ready.summary.contains("w-1 (last beat 16.0 s ago)"),
        "{}",
        ready.summary
    );
    // Within the lease it is only between beats.
    c.lease_ms = Some(20_000);
    let checks = all("http://gw", &facts(c, vec![], 0));
    assert_eq!(find(&checks, "nodes_ready").status, Status::Pass);
}
