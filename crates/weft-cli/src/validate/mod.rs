//! `weft validate`: checks a running deployment from its gateway's address and scores it.
//!
//! Operators asked "is this deployment sound?" and had to read five endpoints and a load
//! test to answer. This command reads what the deployment reports about itself (members,
//! queues, pools, leader, clocks: see `facts` and `checks`), runs a short load test through
//! `weft loadtest`, and with `--faults` a fault drill, then prints one scored checklist and
//! writes the same as HTML. It sends traffic to the one URL it is given and to nothing else;
//! the only processes it touches are one it started or one the user named.

mod checks;
mod drill;
mod facts;
mod load;
mod report;
mod score;

use crate::Failed;
use crate::args::{DEFAULT_URL, Format, parse_duration};
use crate::client::{API_KEY_ENV, Client};
use anyhow::Context;
use clap::{ArgGroup, Args};
use score::{Checklist, Status};
use std::path::PathBuf;
use std::time::Duration;

/// `weft validate`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("fault").args(["kill_pid", "pause_pid", "worker_cmd"])))]
pub struct ValidateArgs {
    /// URL of the gateway to validate; nothing else is sent traffic
    #[arg(long, env = "WEFT_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// API key sent as a bearer token
    #[arg(long, env = API_KEY_ENV, hide_env_values = true)]
    pub api_key: Option<String>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Also write the checklist and the load test's figures as one HTML file
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Longest wait for any one request to the target
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Load test: runs started per second
    #[arg(long, default_value_t = 20.0, value_parser = positive_rate)]
    pub rate: f64,
    /// Load test: how long
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Load test: an objective, e.g. "p99 < 200ms" (repeatable) [default: "errors < 1%"]
    #[arg(long, value_name = "SLO")]
    pub slo: Vec<String>,
    /// Skip the load test
    #[arg(long)]
    pub skip_load: bool,
    /// Run the fault drill: fail one worker process while runs are in flight and check
    /// that every accepted run finishes (needs --kill-pid, --pause-pid or --worker-cmd)
    #[arg(long, requires = "fault")]
    pub faults: bool,
    /// Drill: SIGKILL this worker process (it must be a worker of the cluster on this machine)
    #[arg(long, value_name = "PID", requires = "faults")]
    pub kill_pid: Option<u32>,
    /// Drill: SIGSTOP this worker process, then SIGCONT it after --pause-for
    #[arg(long, value_name = "PID", requires = "faults")]
    pub pause_pid: Option<u32>,
    /// Drill: start this shell command (a `weft serve --role worker ...` on the target's
    /// database), wait for it to join, then SIGKILL it
    #[arg(long, value_name = "COMMAND", requires = "faults")]
    pub worker_cmd: Option<String>,
    /// Drill: how long --pause-pid stays paused
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub pause_for: Duration,
    /// Drill: runs started (the fault comes after half of them; at least 2)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..))]
    pub drill_runs: u32,
    /// Drill: how long the accepted runs have to finish after the last start
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub drill_deadline: Duration,
}

impl ValidateArgs {
    fn fault(&self) -> Option<drill::Fault> {
        if !self.faults {
            return None;
        }
        match (self.kill_pid, self.pause_pid, &self.worker_cmd) {
            (Some(pid), _, _) => Some(drill::Fault::Kill(pid)),
            (_, Some(pid), _) => Some(drill::Fault::Pause(pid)),
            (_, _, Some(cmd)) => Some(drill::Fault::Spawn(cmd.clone())),
            _ => None,
        }
    }
}

/// `--rate`: a positive, finite number of runs per second (a usage error otherwise, exit 2).
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        Ok(_) => Err(format!(
            "must be a positive number of runs per second, not {s}"
        )),
        Err(e) => Err(format!(
            "{e}: expected a number of runs per second, e.g. 20"
        )),
    }
}

/// Runs every check, prints the checklist, writes the report; exits 1 when a check
/// failed and 2 when the target could not be reached.
pub async fn run(args: ValidateArgs) -> anyhow::Result<()> {
    let client = Client::with_key(&args.url, args.api_key.as_deref(), Some(args.timeout))?;
    let url = args.url.trim_end_matches('/');
    eprintln!("validating {url} ...");
    let facts = facts::gather(&client).await;
    let mut checks = checks::all(url, &facts);
    let usable = facts.unreachable.is_none() && facts.not_ready.is_empty();
    let mut load_report = None;
    if args.skip_load {
        checks.push(checks::skipped("load_test", "not run: --skip-load"));
    } else if !usable {
        checks.push(checks::skipped(
            "load_test",
            "not run: the target is not reachable and ready",
        ));
    } else {
        eprintln!(
            "load test: {} runs/s for {} ...",
            args.rate,
            humantime::format_duration(args.duration)
        );
        let target = weft_loadtest::Target::new(url, args.api_key.clone()).context("--url")?;
        let slo = if args.slo.is_empty() {
            vec!["errors < 1%".to_string()]
        } else {
            args.slo.clone()
        };
        let opts = load::LoadOptions {
            rate: args.rate,
            duration: args.duration,
            slo,
        };
        let (check, report) = load::run(&client, &target, &opts).await;
        checks.push(check);
        load_report = report;
    }
    match (args.fault(), &facts.cluster) {
        (None, _) => checks.push(checks::skipped(
            "fault_drill",
            "not run: add --faults with --kill-pid, --pause-pid or --worker-cmd",
        )),
        (Some(_), _) if !usable => checks.push(checks::skipped(
            "fault_drill",
            "not run: the target is not reachable and ready",
        )),
        (Some(_), Err(why)) => {
            checks.push(checks::skipped("fault_drill", &format!("not run: {why}")))
        }
        (Some(fault), Ok(cluster)) => {
            eprintln!("fault drill: {fault}, while runs are in flight ...");
            let opts = drill::DrillOptions {
                fault,
                runs: args.drill_runs,
                pause_for: args.pause_for,
                deadline: args.drill_deadline,
            };
            checks.push(drill::run(&client, cluster, &opts).await);
        }
    }
    let list = Checklist::new(url, checks);
    match args.output {
        Format::Table => print!("{}", list.table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
    }
    if let Some(path) = &args.report {
        std::fs::write(path, report::render(&list, load_report.as_ref()))
            .with_context(|| format!("cannot write --report {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if facts.unreachable.is_some() {
        return Err(Failed(2).into());
    }
    if list.checks.iter().any(|c| c.status == Status::Fail) {
        return Err(Failed(1).into());
    }
    Ok(())
}
