//! `weft validate` against real deployments: a `weft up` process, and a PostgreSQL cluster
//! of real `weft serve` processes (gateway, orchestrator, two workers) in its own schema,
//! where the fault drill SIGKILLs a worker named by PID and every accepted run must still
//! succeed. Also: a queue used by a flow that no worker serves, or a worker that stopped
//! beating, fails the checklist, and a target that is down or never answers ends with a
//! clear verdict instead of hanging.

mod common;

use common::cluster::{Cluster, apply_flow, cluster_info};
use common::{Server, eventually, free_port, text, weft};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

/// Short leases so the killed worker's claims come back within seconds.
const FAST: &[&str] = &["--lease", "2s", "--leader-ttl", "2s", "--poll", "50ms"];

/// Longest any `weft validate` in these tests may take: a hang fails the test instead of
/// stalling it.
const VALIDATE_DEADLINE: Duration = Duration::from_secs(120);

/// Every check of the checklist, in the order it is printed.
const CHECKS: [&str; 8] = [
    "reachable",
    "nodes_ready",
    "queues_served",
    "pool_fits",
    "leader",
    "clocks",
    "load_test",
    "fault_drill",
];

async fn validate(args: &[&str]) -> Output {
    let mut all = vec!["validate", "-o", "json"];
    all.extend_from_slice(args);
    tokio::time::timeout(VALIDATE_DEADLINE, weft(&all))
        .await
        .expect("weft validate ended in time")
}

/// The checklist printed, and the check named `name` in it.
fn checklist(o: &Output) -> Value {
    let (out, err) = text(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\nstderr:\n{err}"))
}

fn check<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {list:#}"))
}

fn status(list: &Value, name: &str) -> String {
    check(list, name)["status"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn weft_up_passes_every_check_and_the_drill_says_it_needs_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let report = dir.path().join("report.html");
    let o = validate(&[
        "--url",
        &server.url,
        "--duration",
        "2s",
        "--report",
        report.to_str().unwrap(),
    ])
    .await;
    let list = checklist(&o);
    assert!(o.status.success(), "{list:#}\n{}", text(&o).1);
    let names: Vec<&str> = list["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, CHECKS);
    // SQLite has no server connection limit; without --faults there is no drill.
    let skipped = ["pool_fits", "fault_drill"];
    for name in CHECKS.into_iter().filter(|n| !skipped.contains(n)) {
        assert_eq!(status(&list, name), "pass", "{list:#}");
    }
    assert_eq!(status(&list, "pool_fits"), "skip");
    assert_eq!(status(&list, "fault_drill"), "skip");
    assert_eq!(list["score"], 100);
    let load = &check(&list, "load_test")["data"];
    assert_eq!(load["errors"], 0, "{load:#}");
    assert!(load["sent"].as_u64().unwrap() > 0, "{load:#}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("weft validate: score 100/100"), "{html}");

    // The drill refuses to kill the one process a `weft up` deployment has.
    let pid = server.pid().to_string();
    let o = validate(&[
        "--url",
        &server.url,
        "--skip-load",
        "--faults",
        "--kill-pid",
        &pid,
    ])
    .await;
    let list = checklist(&o);
    assert!(o.status.success(), "{list:#}");
    let drill = check(&list, "fault_drill");
    assert_eq!(drill["status"], "skip");
    assert!(
        drill["summary"]
            .as_str()
            .unwrap()
            .contains("needs a cluster"),
        "{drill:#}"
    );
    let health = reqwest::get(format!("{}/health", server.url))
        .await
        .unwrap();
    assert!(health.status().is_success(), "weft up was signalled");
}

/// A gateway, an orchestrator and two workers serving only `default`, all listed as members.
async fn cluster(c: &mut Cluster) -> Vec<Server> {
    c.env.push(("WEFT_POSTGRES__POOL_SIZE".into(), "4".into()));
    let gateway = c.start("gw-1", "gateway", FAST).await;
    let mut worker_args = FAST.to_vec();
    worker_args.extend(["--queues", "default"]);
    let nodes = vec![
        gateway,
        c.start("orch-1", "orchestrator", FAST).await,
        c.start("worker-1", "worker", &worker_args).await,
        c.start("worker-2", "worker", &worker_args).await,
    ];
    eventually(
        Duration::from_secs(30),
        "four members and a leader",
        || async {
            let info = cluster_info(&nodes[0]).await?;
            (info["members"].as_array()?.len() == 4 && !info["leader"].is_null()).then_some(())
        },
    )
    .await;
    nodes
}

#[tokio::test]
async fn a_cluster_passes_and_a_worker_killed_by_pid_loses_no_run() {
    let mut c = Cluster::new();
    let mut nodes = cluster(&mut c).await;
    let pid = nodes[2].pid().to_string();
    let o = validate(&[
        "--url",
        &nodes[0].url,
        "--duration",
        "2s",
        "--faults",
        "--kill-pid",
        &pid,
        "--drill-runs",
        "40",
        "--drill-deadline",
        "60s",
    ])
    .await;
    let list = checklist(&o);
    assert!(o.status.success(), "{list:#}\n{}", text(&o).1);
    for name in CHECKS {
        assert_eq!(status(&list, name), "pass", "{name}: {list:#}");
    }
    // Four processes with a pool of 4 and one listening connection each.
    let pools = &check(&list, "pool_fits")["data"];
    assert_eq!(pools["total"], 20, "{pools:#}");
    assert_eq!(check(&list, "leader")["data"]["leader"], "orch-1");
    // PostgreSQL stamps every beat with its own clock, so each member's skew is measured.
    let skews = &check(&list, "clocks")["data"]["member_skew_vs_database_ms"];
    for node in ["gw-1", "orch-1", "worker-1", "worker-2"] {
        assert!(skews[node].is_i64(), "{node}: {skews:#}");
    }
    let drill = &check(&list, "fault_drill")["data"];
    assert_eq!(drill["runs_accepted"], 40, "{drill:#}");
    assert_eq!(drill["finished_by_state"]["succeeded"], 40, "{drill:#}");
    assert_eq!(drill["unfinished"], 0, "{drill:#}");
    assert_eq!(drill["worker"], "worker-1");
    // The worker named was really killed: SIGKILL, not a clean exit.
    let exit = nodes[2].wait_exit(Duration::from_secs(10)).await;
    assert!(!exit.success() && exit.code().is_none(), "{exit:?}");
}

#[tokio::test]
async fn a_queue_with_no_worker_and_a_worker_that_stopped_beating_fail_the_checklist() {
    let mut c = Cluster::new();
    let nodes = cluster(&mut c).await;
    apply_flow(
        &nodes[0],
        "name: mailer\nnodes:\n  send: {type: noop, queue: email}\n",
    )
    .await;
    let o = validate(&["--url", &nodes[0].url, "--skip-load"]).await;
    let list = checklist(&o);
    assert_eq!(o.status.code(), Some(1), "{list:#}");
    let queues = check(&list, "queues_served");
    assert_eq!(queues["status"], "fail", "{list:#}");
    assert!(
        queues["summary"]
            .as_str()
            .unwrap()
            .contains("email (used by mailer)"),
        "{queues:#}"
    );
    assert_eq!(
        queues["data"]["served_by"]["default"],
        serde_json::json!(["worker-1", "worker-2"])
    );
    assert!(list["score"].as_u64().unwrap() < 100);

    // A worker that stops beating (SIGSTOP) is still listed for three leases; once it has
    // missed three beats (its age is over the lease) readiness fails and names it.
    nodes[3].signal("STOP");
    eventually(
        Duration::from_secs(10),
        "worker-2 silent for a lease",
        || async {
            let info = cluster_info(&nodes[0]).await?;
            let lease = info["lease_ms"].as_u64()?;
            let members = info["members"].as_array()?;
            let w2 = members.iter().find(|m| m["id"] == "worker-2")?;
            (w2["heartbeat_age_ms"].as_u64()? > lease).then_some(())
        },
    )
    .await;
    let o = validate(&["--url", &nodes[0].url, "--skip-load"]).await;
    nodes[3].signal("CONT");
    let list = checklist(&o);
    let ready = check(&list, "nodes_ready");
    assert_eq!(ready["status"], "fail", "{list:#}");
    assert!(
        ready["summary"]
            .as_str()
            .unwrap()
            .contains("worker-2 (last beat"),
        "{ready:#}"
    );
}

#[tokio::test]
async fn a_target_that_is_down_or_silent_ends_with_a_clear_verdict() {
    // Nobody listens.
    let url = format!("http://127.0.0.1:{}", free_port());
    let o = validate(&["--url", &url]).await;
    let list = checklist(&o);
    assert_eq!(o.status.code(), Some(2), "{list:#}");
    let reachable = check(&list, "reachable");
    assert_eq!(reachable["status"], "fail");
    assert!(
        reachable["summary"]
            .as_str()
            .unwrap()
            .contains("cannot reach weft"),
        "{reachable:#}"
    );
    assert!(
        list["checks"].as_array().unwrap()[1..]
            .iter()
            .all(|c| c["status"] == "skip"),
        "{list:#}"
    );
    assert_eq!(list["score"], 0);

    // A listener that accepts and never answers: the request deadline ends it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let o = validate(&["--url", &url, "--timeout", "1s"]).await;
    let list = checklist(&o);
    assert_eq!(o.status.code(), Some(2), "{list:#}");
    let summary = check(&list, "reachable")["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        summary.contains("no answer within the time allowed"),
        "{summary}"
    );
    held.abort();
}

#[tokio::test]
async fn bad_load_and_drill_settings_are_usage_errors_before_any_request() {
    // Nobody listens: a refusal here must not even try the target.
    let url = format!("http://127.0.0.1:{}", free_port());
    for (flag, value, says) in [
        (
            "--rate",
            "0",
            "must be a positive number of runs per second, not 0",
        ),
        (
            "--rate",
            "-3",
            "must be a positive number of runs per second, not -3",
        ),
        ("--rate", "fast", "expected a number of runs per second"),
        ("--drill-runs", "1", "1 is not in 2.."),
    ] {
        let o = validate(&["--url", &url, &format!("{flag}={value}")]).await;
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {out}{err}");
        assert!(
            err.contains(flag) && err.contains(says),
            "{flag} {value}: {err}"
        );
        assert!(!err.contains("validating"), "no check ran: {err}");
    }
}
