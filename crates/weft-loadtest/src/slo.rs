//! Service-level objectives: `[scope.]metric OP value`, e.g. `p95 < 200ms`, `errors < 1%`,
//! `start_run.p99 < 50ms`, `sustain.rps >= 95`, `completion.p95 < 2s`. Each becomes a
//! verdict (measured, threshold, pass/fail) that decides the command's exit code.

use crate::report::{Counts, Latency, Report};
use serde::{Deserialize, Serialize};

/// What an SLO is measured over.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// The whole test.
    All,
    /// A step or phase, by name.
    Named(String),
    /// Run completion latency (`wait: true` steps).
    Completion,
}

/// A latency statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Largest.
    Max,
    /// Mean.
    Mean,
}

/// A measured quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency statistic, in ms.
    Latency(Stat),
    /// Failed requests, in percent of sent (`%`) or as a count.
    Errors {
        /// Percent (`%`) or count.
        percent: bool,
    },
    /// Dropped arrivals, in percent of planned or as a count.
    Dropped {
        /// Percent (`%`) or count.
        percent: bool,
    },
    /// Requests per second.
    Rps,
}

/// `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Less than.
    Lt,
    /// At most.
    Le,
    /// More than.
    Gt,
    /// At least.
    Ge,
}

/// One parsed objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slo {
    /// As written.
    pub text: String,
    /// Over what.
    pub scope: Scope,
    /// Which quantity.
    pub metric: Metric,
    /// Comparison.
    pub op: Op,
    /// In ms for latency, percent or count for errors/dropped, per second for rps.
    pub threshold: f64,
}

/// An SLO's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloResult {
    /// The SLO as written.
    pub slo: String,
    /// The measured value (None when there was nothing to measure).
    pub measured: Option<f64>,
    /// The threshold, in `unit`.
    pub threshold: f64,
    /// `ms`, `%`, `count` or `/s`.
    pub unit: String,
    /// Whether it held.
    pub passed: bool,
}

const FORMS: &str = "write `[step or phase.]METRIC OP VALUE`: METRIC p50|p90|p95|p99|p999|max|mean (VALUE with ms, s or us), errors|dropped (VALUE with % or a count), rps; OP <, <=, >, >=; e.g. `p95 < 200ms`, `errors < 1%`, `start_run.p99 < 50ms`";

impl Slo {
    /// Parses one SLO; the error says what is wrong and shows the allowed forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (op, at, len) = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)]
            .iter()
            .find_map(|(s, op)| t.find(s).map(|i| (*op, i, s.len())))
            .ok_or_else(|| format!("{text:?} has no comparison; {FORMS}"))?;
        let (lhs, rhs) = (t[..at].trim(), t[at + len..].trim());
        let (scope, metric_name) = match lhs.rsplit_once('.') {
            Some(("completion", m)) => (Scope::Completion, m),
            Some((s, m)) if !s.is_empty() => (Scope::Named(s.to_string()), m),
            Some(_) => return Err(format!("{text:?} has an empty scope before `.`; {FORMS}")),
            None => (Scope::All, lhs),
        };
        let latency = match metric_name {
            "p50" => Some(Stat::P50),
            "p90" => Some(Stat::P90),
            "p95" => Some(Stat::P95),
            "p99" => Some(Stat::P99),
            "p999" => Some(Stat::P999),
            "max" => Some(Stat::Max),
            "mean" => Some(Stat::Mean),
            _ => None,
        };
        let num = |s: &str| -> Result<f64, String> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    format!("{text:?}: {rhs:?} is not a non-negative number with its unit; {FORMS}")
                })
        };
        if latency.is_none() && !["errors", "dropped", "rps"].contains(&metric_name) {
            return Err(format!("{text:?}: unknown metric {metric_name:?}; {FORMS}"));
        }
        let (metric, threshold) = if let Some(q) = latency {
            let ms = if let Some(v) = rhs.strip_suffix("ms") {
                num(v)?
            } else if let Some(v) = rhs.strip_suffix("us") {
                num(v)? / 1000.0
            } else if let Some(v) = rhs.strip_suffix('s') {
                num(v)? * 1000.0
            } else {
                return Err(format!(
                    "{text:?}: a latency needs a unit (ms, s or us), got {rhs:?}"
                ));
            };
            (Metric::Latency(q), ms)
        } else {
            if scope == Scope::Completion {
                return Err(format!(
                    "{text:?}: completion takes a latency metric (p50..max, mean)"
                ));
            }
            let (percent, v) = match rhs.strip_suffix('%') {
                Some(v) => (true, num(v)?),
                None => (false, num(rhs)?),
            };
            match metric_name {
                "errors" => (Metric::Errors { percent }, v),
                "dropped" => (Metric::Dropped { percent }, v),
                "rps" if !percent => (Metric::Rps, v),
                "rps" => return Err(format!("{text:?}: rps is per second, not a percentage")),
                other => return Err(format!("{text:?}: unknown metric {other:?}; {FORMS}")),
            }
        };
        Ok(Self {
            text: t.to_string(),
            scope,
            metric,
            op,
            threshold,
        })
    }

    /// The unit the threshold and measurement are in.
    pub fn unit(&self) -> &'static str {
        match self.metric {
            Metric::Latency(_) => "ms",
            Metric::Errors { percent: true } | Metric::Dropped { percent: true } => "%",
            Metric::Errors { .. } | Metric::Dropped { .. } => "count",
            Metric::Rps => "/s",
        }
    }

    /// Judges this SLO against a report.
    pub fn evaluate(&self, report: &Report) -> SloResult {
        let measured = self.measure(report);
        let passed = measured.is_some_and(|m| match self.op {
            Op::Lt => m < self.threshold,
            Op::Le => m <= self.threshold,
            Op::Gt => m > self.threshold,
            Op::Ge => m >= self.threshold,
        });
        SloResult {
            slo: self.text.clone(),
            measured,
            threshold: self.threshold,
            unit: self.unit().into(),
            passed,
        }
    }

    fn measure(&self, r: &Report) -> Option<f64> {
        let counts: &Counts = match &self.scope {
            Scope::All => &r.totals,
            Scope::Completion => {
                let c = r.completion.as_ref()?;
                return latency_of(&c.latency, self.metric);
            }
            Scope::Named(n) => r
                .steps
                .iter()
                .find(|s| &s.name == n)
                .map(|s| &s.counts)
                .or_else(|| r.phases.iter().find(|p| &p.name == n).map(|p| &p.counts))?,
        };
        match self.metric {
            Metric::Latency(_) => latency_of(&counts.latency, self.metric),
            Metric::Errors { percent: true } => (counts.sent > 0).then_some(counts.error_rate_pct),
            Metric::Errors { percent: false } => Some(counts.errors as f64),
            Metric::Dropped { percent: true } => {
                (counts.planned > 0).then(|| 100.0 * counts.dropped as f64 / counts.planned as f64)
            }
            Metric::Dropped { percent: false } => Some(counts.dropped as f64),
            Metric::Rps => Some(counts.throughput_rps),
        }
    }
}

fn latency_of(l: &Latency, m: Metric) -> Option<f64> {
    let Metric::Latency(q) = m else { return None };
    if l.count == 0 {
        return None;
    }
    Some(match q {
        Stat::P50 => l.p50,
        Stat::P90 => l.p90,
        Stat::P95 => l.p95,
        Stat::P99 => l.p99,
        Stat::P999 => l.p999,
        Stat::Max => l.max,
        Stat::Mean => l.mean,
    })
}

impl TryFrom<String> for Slo {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Slo::parse(&s)
    }
}

impl From<Slo> for String {
    fn from(s: Slo) -> String {
        s.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slos_parse_with_units_and_scopes() {
        let s = Slo::parse("p95 < 200ms").unwrap();
        assert_eq!(
            (s.scope.clone(), s.metric, s.op, s.threshold),
            (Scope::All, Metric::Latency(Stat::P95), Op::Lt, 200.0)
        );
        let s = Slo::parse("start_run.p99 <= 1.5s").unwrap();
        assert_eq!(
            (s.scope, s.threshold, s.op),
            (Scope::Named("start_run".into()), 1500.0, Op::Le)
        );
        assert_eq!(
            Slo::parse("errors < 1%").unwrap().metric,
            Metric::Errors { percent: true }
        );
        assert_eq!(Slo::parse("sustain.rps >= 95").unwrap().metric, Metric::Rps);
        assert_eq!(
            Slo::parse("completion.p50 < 2s").unwrap().scope,
            Scope::Completion
        );
        for (bad, says) in [
            ("p95 200ms", "no comparison"),
            ("p95 < 200", "needs a unit"),
            ("p97 < 2ms", "unknown metric"),
            ("errors < -1%", "non-negative"),
            ("rps > 5%", "not a percentage"),
            ("completion.errors < 1%", "latency metric"),
        ] {
            let e = Slo::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
