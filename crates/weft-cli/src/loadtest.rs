//! `weft loadtest`: runs a scenario against a weft gateway with the open-loop generator of
//! the `weft-loadtest` crate, prints the results (stdout), writes JSON and HTML reports,
//! saves and compares baselines, and exits non-zero when an SLO fails, the test ended early
//! or a compared baseline shows a regression. `--self-test` measures the generator itself.

mod print;

use crate::Failed;
use crate::args::{DEFAULT_URL, Format, parse_duration};
use crate::client::API_KEY_ENV;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use weft_loadtest::{
    LoadtestError, Progress, Report, RunOptions, Scenario, Target, baseline, html,
};

/// Where baselines live unless `--baseline-dir` says otherwise.
pub const DEFAULT_BASELINE_DIR: &str = ".weft/baselines";
/// `--self-test` rate when `--rate` is not given.
pub const SELF_TEST_RATE: f64 = 20_000.0;

/// `weft loadtest`.
#[derive(Args, Debug)]
#[command(arg_required_else_help = true)]
pub struct LoadtestArgs {
    /// Scenario file (YAML): steps, phases, SLOs; see docs/loadtest.md
    #[arg(
        value_name = "SCENARIO",
        required_unless_present = "self_test",
        conflicts_with = "self_test"
    )]
    pub scenario: Option<PathBuf>,
    /// Base URL of the weft gateway; traffic goes to this address only
    #[arg(long, env = "WEFT_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// API key, sent as `Authorization: Bearer`
    #[arg(long, value_name = "KEY", env = API_KEY_ENV, hide_env_values = true)]
    pub api_key: Option<String>,
    /// Output format of the results on stdout
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Also write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the self-contained HTML report (charts, viewable offline) to FILE
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Save this run's report as baseline NAME
    #[arg(long, value_name = "NAME")]
    pub save_baseline: Option<String>,
    /// Compare with baseline NAME; regressions make the exit code 1
    #[arg(long, value_name = "NAME")]
    pub compare: Option<String>,
    /// Directory of baselines
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BASELINE_DIR)]
    pub baseline_dir: PathBuf,
    /// No progress line on stderr
    #[arg(long)]
    pub no_progress: bool,
    /// Measure the generator itself against a static in-process endpoint on loopback
    #[arg(long)]
    pub self_test: bool,
    /// --self-test: arrivals per second [default: 20000]
    #[arg(long, requires = "self_test")]
    pub rate: Option<f64>,
    /// --self-test: how long, e.g. 10s [default: 10s]
    #[arg(long, requires = "self_test", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// --self-test: connections [default: 64]
    #[arg(long, requires = "self_test")]
    pub connections: Option<usize>,
}

/// Runs the command.
pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let opts = RunOptions {
        progress: if args.no_progress {
            Progress::Off
        } else {
            Progress::auto()
        },
        ..RunOptions::default()
    };
    // Read the baseline first: a typo in --compare should not cost a whole test.
    let base = match &args.compare {
        Some(name) => Some(baseline::load(&args.baseline_dir, name).map_err(refuse)?),
        None => None,
    };
    let report = if args.self_test {
        let rate = args.rate.unwrap_or(SELF_TEST_RATE);
        let duration = args.duration.unwrap_or(Duration::from_secs(10));
        let connections = args
            .connections
            .unwrap_or(weft_loadtest::scenario::DEFAULT_CONNECTIONS);
        weft_loadtest::selftest::run(rate, duration, connections, &opts)
            .await
            .map_err(refuse)?
    } else {
        let path = args
            .scenario
            .as_deref()
            .context("a scenario file is required")?;
        let scenario = Scenario::from_path(path).map_err(refuse)?;
        let target = Target::new(&args.url, args.api_key.clone()).map_err(refuse)?;
        eprintln!(
            "load test {:?} against {}: {} phases, {}",
            scenario.name,
            target.base_url(),
            scenario.phases.len(),
            humantime::format_duration(scenario.total_duration())
        );
        weft_loadtest::run(&target, &scenario, &opts)
            .await
            .map_err(refuse)?
    };
    let comparison = base
        .as_ref()
        .map(|b| baseline::compare(args.compare.as_deref().unwrap_or(""), b, &report));
    write_files(&args, &report)?;
    match args.output {
        Format::Json => print::json(&report, comparison.as_ref()),
        Format::Table => print::table(&report, comparison.as_ref()),
    }
    if let Some(a) = &report.aborted {
        eprintln!("error: {a}");
    }
    let regressions = comparison.as_ref().map_or(0, |c| c.regressions);
    if !report.passed() || regressions > 0 {
        let failed_slos = report.slo.iter().filter(|s| !s.passed).count();
        eprintln!(
            "FAIL: {failed_slos} SLO(s) failed{}{}",
            if report.aborted.is_some() {
                ", the test ended early"
            } else {
                ""
            },
            if regressions > 0 {
                format!(", {regressions} regression(s) against the baseline")
            } else {
                String::new()
            }
        );
        return Err(Failed(1).into());
    }
    Ok(())
}

fn write_files(args: &LoadtestArgs, report: &Report) -> anyhow::Result<()> {
    if let Some(p) = &args.json {
        std::fs::write(p, report.to_json())
            .with_context(|| format!("cannot write {}", p.display()))?;
        eprintln!("JSON report: {}", p.display());
    }
    if let Some(p) = &args.html {
        std::fs::write(p, html::render(report, &[]))
            .with_context(|| format!("cannot write {}", p.display()))?;
        eprintln!("HTML report: {}", p.display());
    }
    if let Some(name) = &args.save_baseline {
        let p = baseline::save(&args.baseline_dir, name, report).map_err(refuse)?;
        eprintln!("baseline {name:?} saved: {}", p.display());
    }
    Ok(())
}

/// Prints why nothing could be measured and picks the exit code: 2 for a scenario the
/// generator refuses or a target it cannot reach (like a wrong command line), 1 otherwise.
fn refuse(e: LoadtestError) -> anyhow::Error {
    eprintln!("error: {e}");
    let code = match e {
        LoadtestError::Scenario { .. } | LoadtestError::Target(_) | LoadtestError::Preflight(_) => {
            2
        }
        LoadtestError::Baseline(_) | LoadtestError::Io { .. } => 1,
    };
    Failed(code).into()
}
