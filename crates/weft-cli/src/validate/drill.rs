//! The fault drill (`weft validate --faults`): while runs started through the gateway are
//! in flight, one worker process is killed (SIGKILL) or paused (SIGSTOP, then SIGCONT), and
//! every run the gateway accepted must still finish. It is the claim-and-lease design of
//! decision 0007 tested on the real deployment: a lost worker may cost time, never a run.
//!
//! The process signalled is one `weft validate` started itself (`--worker-cmd`) or one the
//! user names by PID; either way it must be listed by the cluster as a worker on this
//! machine, so a mistyped PID is refused instead of signalled. A single `weft up` process
//! has no separate worker to lose, so the drill says it needs a cluster.

use super::facts::{Cluster, Member};
use super::score::{Check, Status};
use crate::client::Client;
use anyhow::Context;
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The flow the drill starts: a delay in the middle keeps runs in flight across the fault.
pub const DRILL_FLOW: &str = "weft-validate-drill";
const DRILL_YAML: &str = "name: weft-validate-drill
description: Applied by `weft validate --faults`; safe to delete.
nodes:
  first: {type: noop}
  wait: {type: delay, needs: [first], params: {duration: 1s}}
  second: {type: noop, needs: [wait]}
  third: {type: noop, needs: [second]}
";
/// How long a started worker has to show up in the cluster's member list.
const JOIN_WAIT: Duration = Duration::from_secs(30);
/// Time between two looks at the runs still unfinished.
const POLL: Duration = Duration::from_millis(250);

/// Which process to fail, and how.
#[derive(Debug, Clone)]
pub enum Fault {
    /// SIGKILL this PID.
    Kill(u32),
    /// SIGSTOP this PID, then SIGCONT after the pause.
    Pause(u32),
    /// Start this shell command (a worker), then SIGKILL it.
    Spawn(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill(pid) => write!(f, "SIGKILL PID {pid}"),
            Fault::Pause(pid) => write!(f, "SIGSTOP then SIGCONT PID {pid}"),
            Fault::Spawn(cmd) => write!(f, "start `{cmd}`, then SIGKILL it"),
        }
    }
}

/// The drill's settings.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The fault.
    pub fault: Fault,
    /// Runs started in all; the fault comes after half of them.
    pub runs: u32,
    /// How long a pause lasts.
    pub pause_for: Duration,
    /// How long every accepted run has to finish after the last was started.
    pub deadline: Duration,
}

/// Runs the drill against the cluster behind `client` and returns its verdict.
pub async fn run(client: &Client, cluster: &Cluster, opts: &DrillOptions) -> Check {
    if !cluster.is_cluster() {
        return Check::new(
            "fault_drill",
            0,
            Status::Skip,
            "not run: the fault drill needs a cluster of `weft serve` processes; `weft up` is one \
             process, and killing it stops the server itself (restarting it is out of scope)"
                .into(),
            Value::Null,
        );
    }
    match drill(client, opts).await {
        Ok(check) => check,
        Err(e) => Check::new(
            "fault_drill",
            20,
            Status::Fail,
            format!("{e:#}"),
            json!({"fault": opts.fault.to_string()}),
        ),
    }
}

async fn drill(client: &Client, opts: &DrillOptions) -> anyhow::Result<Check> {
    let mut spawned = None;
    let (pid, pause) = match &opts.fault {
        Fault::Kill(pid) => (*pid, false),
        Fault::Pause(pid) => (*pid, true),
        Fault::Spawn(cmd) => {
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(format!("exec {cmd}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start --worker-cmd {cmd:?}"))?;
            let pid = child.id().context("the started worker has no PID")?;
            spawned = Some(child);
            (pid, false)
        }
    };
    let target = wait_for_member(client, pid, &mut spawned).await?;
    let (listed, lease_ms) = members(client).await?;
    // A worker that stopped beating is still listed for a while; it would not take over.
    let others = listed
        .into_iter()
        .filter(|m| m.pid != pid && serves_default(m) && !m.is_silent(lease_ms))
        .count();
    if !serves_default(&target) {
        anyhow::bail!(
            "worker {} (PID {pid}) does not serve queue `default`, which the drill's runs use",
            target.id
        );
    }
    if !pause && others == 0 {
        anyhow::bail!(
            "worker {} (PID {pid}) is the only worker serving queue `default`: killing it would stop every run until it is back; start another worker first",
            target.id
        );
    }
    client
        .send(
            client
                .request(reqwest::Method::POST, &["v1", "flows"])
                .header("content-type", "application/yaml")
                .body(DRILL_YAML),
        )
        .await
        .context("cannot apply the drill's flow")?;

    let half = opts.runs / 2;
    let mut accepted = start_runs(client, half).await?;
    let signal = if pause { "STOP" } else { "KILL" };
    send_signal(pid, signal).await?;
    let faulted_at = Instant::now();
    let mut resume = pause.then(|| (pid, faulted_at + opts.pause_for));
    // From here on a paused process is resumed whatever happens.
    let waited = match start_runs(client, opts.runs - half).await {
        Ok(ids) => {
            accepted.extend(ids);
            let deadline = Instant::now() + opts.deadline + opts.pause_for * u32::from(pause);
            Ok(wait_all(client, &accepted, deadline, &mut resume).await)
        }
        Err(e) => Err(e),
    };
    if let Some((pid, _)) = resume {
        send_signal(pid, "CONT").await?;
    }
    let Finished {
        states,
        unfinished,
        last_finish,
    } = waited?;
    let last_finish = last_finish.unwrap_or(faulted_at).max(faulted_at);
    if let Some(mut child) = spawned {
        let _ = child.wait().await;
    }
    let fault = if pause {
        format!(
            "paused worker {} (PID {pid}) for {}",
            target.id,
            humantime::format_duration(opts.pause_for)
        )
    } else {
        format!("killed worker {} (PID {pid}) with SIGKILL", target.id)
    };
    let succeeded = states.get("succeeded").copied().unwrap_or(0);
    let recovery_s = (last_finish - faulted_at).as_secs_f64();
    let data = json!({
        "fault": fault, "worker": target.id, "pid": pid, "runs_accepted": accepted.len(),
        "finished_by_state": states, "unfinished": unfinished.len(),
        "unfinished_ids": unfinished.iter().take(5).collect::<Vec<_>>(),
        "last_finished_after_fault_s": (recovery_s * 10.0).round() / 10.0,
        "other_workers": others,
    });
    let n = accepted.len();
    let (status, summary) = if !unfinished.is_empty() {
        (
            Status::Fail,
            format!(
                "{fault}: {} of {n} accepted runs had not finished {} after the last start",
                unfinished.len(),
                humantime::format_duration(opts.deadline)
            ),
        )
    } else if succeeded as usize != n {
        (
            Status::Fail,
            format!("{fault}: of {n} accepted runs only {succeeded} succeeded ({states:?})"),
        )
    } else {
        (
            Status::Pass,
            format!(
                "{fault}: all {n} accepted runs succeeded, nothing lost; the last finished {recovery_s:.1} s after the fault"
            ),
        )
    };
    Ok(Check::new("fault_drill", 20, status, summary, data))
}

/// Where the accepted runs ended up.
struct Finished {
    states: std::collections::BTreeMap<String, u64>,
    unfinished: Vec<String>,
    last_finish: Option<Instant>,
}

/// Reads the unfinished runs again every [`POLL`] until all have finished or `deadline`;
/// resumes a paused process when its pause is over.
async fn wait_all(
    client: &Client,
    accepted: &[String],
    deadline: Instant,
    resume: &mut Option<(u32, Instant)>,
) -> Finished {
    let mut done = Finished {
        states: Default::default(),
        unfinished: accepted.to_vec(),
        last_finish: None,
    };
    while !done.unfinished.is_empty() && Instant::now() < deadline {
        if let Some((pid, at)) = *resume
            && Instant::now() >= at
            && send_signal(pid, "CONT").await.is_ok()
        {
            *resume = None;
        }
        let read: Vec<(String, Option<String>)> =
            stream::iter(std::mem::take(&mut done.unfinished))
                .map(|id| async move {
                    let state = client.get(&["v1", "runs", &id], &[]).await.ok();
                    (
                        id,
                        state.and_then(|v| v["state"].as_str().map(str::to_string)),
                    )
                })
                .buffer_unordered(16)
                .collect()
                .await;
        for (id, state) in read {
            match state.as_deref() {
                Some(s @ ("succeeded" | "failed" | "cancelled")) => {
                    *done.states.entry(s.to_string()).or_default() += 1;
                    done.last_finish = Some(Instant::now());
                }
                _ => done.unfinished.push(id),
            }
        }
        if !done.unfinished.is_empty() {
            tokio::time::sleep(POLL).await;
        }
    }
    done
}

fn serves_default(m: &Member) -> bool {
    m.serves(weft_core::flow::DEFAULT_QUEUE)
}

/// The members `/v1/cluster` lists, and the lease.
async fn members(client: &Client) -> anyhow::Result<(Vec<Member>, Option<u64>)> {
    let v = client.get(&["v1", "cluster"], &[]).await?;
    let members =
        serde_json::from_value(v["members"].clone()).context("unexpected /v1/cluster members")?;
    Ok((members, v["lease_ms"].as_u64()))
}

/// The cluster member with `pid` on this machine, waiting for it to join when it was just
/// started. Refuses a PID that is no worker of this cluster.
async fn wait_for_member(
    client: &Client,
    pid: u32,
    spawned: &mut Option<tokio::process::Child>,
) -> anyhow::Result<Member> {
    // The name members report, so a member on this machine is matched by PID.
    let host = weft_engine::hostname();
    let until = Instant::now()
        + if spawned.is_some() {
            JOIN_WAIT
        } else {
            Duration::ZERO
        };
    loop {
        let (listed, _) = members(client).await?;
        if let Some(m) = listed
            .iter()
            .find(|m| m.pid == pid && m.hostname == host && m.is_worker())
        {
            return Ok(m.clone());
        }
        if let Some(child) = spawned
            && let Some(status) = child.try_wait()?
        {
            anyhow::bail!(
                "the worker started with --worker-cmd exited ({status}) before joining the cluster"
            );
        }
        if Instant::now() >= until {
            let workers: Vec<String> = listed
                .iter()
                .filter(|m| m.is_worker())
                .map(|m| format!("{} (PID {} on {})", m.id, m.pid, m.hostname))
                .collect();
            anyhow::bail!(
                "PID {pid} is not a worker of this cluster on this machine ({host}), so it was not signalled; the cluster's workers: {}",
                if workers.is_empty() {
                    "none".to_string()
                } else {
                    workers.join(", ")
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `n` runs of the drill flow, 8 at a time; returns the ids accepted.
async fn start_runs(client: &Client, n: u32) -> anyhow::Result<Vec<String>> {
    let body = json!({"flow": DRILL_FLOW, "input": {}});
    let results: Vec<anyhow::Result<Value>> = stream::iter(0..n)
        .map(|_| client.post(&["v1", "runs"], &body))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut ids = Vec::new();
    for r in results {
        let v = r.context("the gateway refused a run during the drill")?;
        ids.push(
            v["id"]
                .as_str()
                .context("a started run has no id")?
                .to_string(),
        );
    }
    Ok(ids)
}

/// `kill -SIGNAL pid`, through the system's `kill` (weft forbids unsafe code, so no libc).
async fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await
        .context("cannot run `kill`")?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed ({status})");
    Ok(())
}
