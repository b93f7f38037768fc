//! Saved reports ("baselines") and the side-by-side comparison of a new report with one.
//! A baseline is the JSON report itself, `DIR/NAME.json`, so it can be read, diffed and
//! kept in version control like any other file.

use crate::LoadtestError;
use crate::report::{Counts, REPORT_VERSION, Report};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A latency figure counts as a regression when it grows by more than this share...
pub const LATENCY_TOLERANCE: f64 = 0.10;
/// ...and by more than this many milliseconds (so 0.2 ms -> 0.3 ms is not a regression).
pub const LATENCY_FLOOR_MS: f64 = 1.0;
/// Throughput counts as a regression when it falls by more than this share.
pub const THROUGHPUT_TOLERANCE: f64 = 0.10;
/// The error rate counts as a regression when it rises by more than this many points.
pub const ERROR_RATE_TOLERANCE_PCT: f64 = 0.5;

fn path_of(dir: &Path, name: &str) -> Result<PathBuf, LoadtestError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        || name.starts_with('.')
    {
        return Err(LoadtestError::Baseline(format!(
            "{name:?} is not a baseline name: use letters, digits, - _ . (not starting with .)"
        )));
    }
    Ok(dir.join(format!("{name}.json")))
}

/// Writes `report` as baseline `name` under `dir` (created if missing); returns the file.
pub fn save(dir: &Path, name: &str, report: &Report) -> Result<PathBuf, LoadtestError> {
    let path = path_of(dir, name)?;
    std::fs::create_dir_all(dir).map_err(|source| LoadtestError::Io {
        context: format!("cannot create {}", dir.display()),
        source,
    })?;
    // Write then rename, so an interrupted save never leaves half a baseline.
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, report.to_json())
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|source| LoadtestError::Io {
            context: format!("cannot write {}", path.display()),
            source,
        })?;
    Ok(path)
}

/// Reads baseline `name` from `dir`.
pub fn load(dir: &Path, name: &str) -> Result<Report, LoadtestError> {
    let path = path_of(dir, name)?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        LoadtestError::Baseline(format!(
            "cannot read {} ({e}); save one first with --save-baseline {name}",
            path.display()
        ))
    })?;
    let report: Report = serde_json::from_str(&text).map_err(|e| {
        LoadtestError::Baseline(format!("{} is not a load test report: {e}", path.display()))
    })?;
    if report.version != REPORT_VERSION {
        return Err(LoadtestError::Baseline(format!(
            "{} has report version {}, this weft writes {REPORT_VERSION}; save a new baseline",
            path.display(),
            report.version
        )));
    }
    Ok(report)
}

/// One figure of one scope in both reports.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    /// `total`, `step NAME` or `phase NAME`.
    pub scope: String,
    /// `p50_ms`, `p95_ms`, `p99_ms`, `error_rate_pct` or `throughput_rps`.
    pub metric: String,
    /// The baseline's value.
    pub baseline: f64,
    /// This run's value.
    pub current: f64,
    /// Change in percent of the baseline (0 when the baseline is 0).
    pub change_pct: f64,
    /// Worse beyond the tolerances above.
    pub regression: bool,
}

/// All rows, and how many are regressions.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Name of the baseline compared with.
    pub baseline: String,
    /// Rows in report order.
    pub rows: Vec<CompareRow>,
    /// Rows marked as regressions.
    pub regressions: usize,
}

/// Compares the totals, each step and each phase present in both reports.
pub fn compare(name: &str, base: &Report, current: &Report) -> Comparison {
    let mut rows = Vec::new();
    rows_for("total", &base.totals, &current.totals, &mut rows);
    for s in &current.steps {
        if let Some(b) = base.steps.iter().find(|b| b.name == s.name) {
            rows_for(&format!("step {}", s.name), &b.counts, &s.counts, &mut rows);
        }
    }
    for p in &current.phases {
        if let Some(b) = base.phases.iter().find(|b| b.name == p.name) {
            rows_for(
                &format!("phase {}", p.name),
                &b.counts,
                &p.counts,
                &mut rows,
            );
        }
    }
    let regressions = rows.iter().filter(|r| r.regression).count();
    Comparison {
        baseline: name.to_string(),
        rows,
        regressions,
    }
}

fn rows_for(scope: &str, b: &Counts, c: &Counts, rows: &mut Vec<CompareRow>) {
    let row = |metric: &str, base: f64, cur: f64, regression: bool| CompareRow {
        scope: scope.to_string(),
        metric: metric.to_string(),
        baseline: base,
        current: cur,
        change_pct: if base == 0.0 {
            0.0
        } else {
            100.0 * (cur - base) / base
        },
        regression,
    };
    let slower = |base: f64, cur: f64| {
        cur > base * (1.0 + LATENCY_TOLERANCE) && cur - base > LATENCY_FLOOR_MS
    };
    let (bl, cl) = (&b.latency, &c.latency);
    rows.push(row("p50_ms", bl.p50, cl.p50, slower(bl.p50, cl.p50)));
    rows.push(row("p95_ms", bl.p95, cl.p95, slower(bl.p95, cl.p95)));
    rows.push(row("p99_ms", bl.p99, cl.p99, slower(bl.p99, cl.p99)));
    rows.push(row(
        "error_rate_pct",
        b.error_rate_pct,
        c.error_rate_pct,
        c.error_rate_pct - b.error_rate_pct > ERROR_RATE_TOLERANCE_PCT,
    ));
    rows.push(row(
        "throughput_rps",
        b.throughput_rps,
        c.throughput_rps,
        c.throughput_rps < b.throughput_rps * (1.0 - THROUGHPUT_TOLERANCE),
    ));
}

impl Comparison {
    /// Aligned text: scope, metric, baseline, current, change, and `REGRESSION` marks.
    pub fn render_table(&self) -> String {
        let mut out = format!(
            "compared with baseline {:?}: {} regression(s)\n",
            self.baseline, self.regressions
        );
        out.push_str(&format!(
            "{:<24} {:<15} {:>12} {:>12} {:>9}\n",
            "SCOPE", "METRIC", "BASELINE", "CURRENT", "CHANGE"
        ));
        for r in &self.rows {
            out.push_str(&format!(
                "{:<24} {:<15} {:>12.2} {:>12.2} {:>+8.1}%{}\n",
                r.scope,
                r.metric,
                r.baseline,
                r.current,
                r.change_pct,
                if r.regression { "  REGRESSION" } else { "" }
            ));
        }
        out
    }
}
