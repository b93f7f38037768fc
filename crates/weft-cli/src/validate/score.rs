//! The checklist `weft validate` prints: each check's verdict, one sentence and the data
//! behind it, and one score out of 100 so two deployments (or two days) compare at a glance.
//!
//! A check weighs what it is worth to an operator; a warning earns half its weight, a
//! failure nothing, and a check that could not apply (the fault drill without `--faults`,
//! pool sizing on an embedded store) is left out of the total rather than counted as passed.

use serde::Serialize;
use serde_json::Value;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Pass,
    /// Works, but with little headroom or an unusual reading.
    Warn,
    /// Broken: `weft validate` exits non-zero.
    Fail,
    /// Not applicable, or not run (the sentence says why); not scored.
    Skip,
}

impl Status {
    /// The word printed in the table.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }

    /// The share of its weight a check earns, or `None` when it is not scored.
    fn credit(self) -> Option<f64> {
        match self {
            Status::Pass => Some(1.0),
            Status::Warn => Some(0.5),
            Status::Fail => Some(0.0),
            Status::Skip => None,
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name (`nodes_ready`, `queues_served`, ...).
    pub name: &'static str,
    /// Verdict.
    pub status: Status,
    /// What was found, as one sentence.
    pub summary: String,
    /// The figures behind the verdict.
    pub data: Value,
    /// Points the check is worth.
    pub weight: u32,
}

impl Check {
    /// A check with its verdict, sentence and data.
    pub fn new(
        name: &'static str,
        weight: u32,
        status: Status,
        summary: String,
        data: Value,
    ) -> Self {
        Self {
            name,
            status,
            summary,
            data,
            weight,
        }
    }
}

/// Every check, with the score.
#[derive(Debug, Clone, Serialize)]
pub struct Checklist {
    /// The target's URL.
    pub target: String,
    /// Score out of 100 (see the module docs).
    pub score: u32,
    /// How many checks passed, warned, failed and were skipped.
    pub passed: usize,
    /// Warnings.
    pub warnings: usize,
    /// Failures.
    pub failures: usize,
    /// Skipped.
    pub skipped: usize,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Checklist {
    /// Scores `checks`.
    pub fn new(target: &str, checks: Vec<Check>) -> Self {
        let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
        Self {
            target: target.to_string(),
            score: score(&checks),
            passed: count(Status::Pass),
            warnings: count(Status::Warn),
            failures: count(Status::Fail),
            skipped: count(Status::Skip),
            checks,
        }
    }

    /// The table printed with `--output table`.
    pub fn table(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("{:width$}  STATUS  SUMMARY\n", "CHECK");
        for c in &self.checks {
            out += &format!("{:width$}  {:6}  {}\n", c.name, c.status.word(), c.summary);
            if !c.data.is_null() {
                out += &format!("{:width$}          data: {}\n", "", c.data);
            }
        }
        out += &format!(
            "\nscore {}/100 for {}: {} passed, {} warnings, {} failed, {} skipped\n",
            self.score, self.target, self.passed, self.warnings, self.failures, self.skipped
        );
        out
    }
}

/// The weighted share of the scored checks' points earned, out of 100 (0 when nothing was
/// scored: a deployment that could not be checked has shown nothing).
pub fn score(checks: &[Check]) -> u32 {
    let (mut earned, mut total) = (0.0, 0.0);
    for c in checks {
        if let Some(credit) = c.status.credit() {
            earned += credit * f64::from(c.weight);
            total += f64::from(c.weight);
        }
    }
    if total == 0.0 {
        return 0;
    }
    (100.0 * earned / total).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: Status, weight: u32) -> Check {
        Check::new("c", weight, status, String::new(), Value::Null)
    }

    #[test]
    fn warnings_earn_half_failures_nothing_and_skips_are_left_out() {
        assert_eq!(
            score(&[check(Status::Pass, 20), check(Status::Pass, 10)]),
            100
        );
        assert_eq!(
            score(&[check(Status::Pass, 20), check(Status::Warn, 20)]),
            75
        );
        assert_eq!(
            score(&[check(Status::Pass, 30), check(Status::Fail, 10)]),
            75
        );
        // A skipped check changes nothing, whatever its weight.
        assert_eq!(
            score(&[
                check(Status::Pass, 30),
                check(Status::Fail, 10),
                check(Status::Skip, 50)
            ]),
            75
        );
        assert_eq!(score(&[check(Status::Skip, 10)]), 0);
        assert_eq!(score(&[]), 0);
    }

    #[test]
    fn the_checklist_counts_verdicts_and_prints_every_check() {
        let list = Checklist::new(
            "http://x",
            vec![
                Check::new(
                    "a",
                    10,
                    Status::Pass,
                    "fine".into(),
                    serde_json::json!({"n": 1}),
                ),
                Check::new("b", 10, Status::Fail, "broken".into(), Value::Null),
                Check::new("c", 10, Status::Skip, "not run".into(), Value::Null),
            ],
        );
        assert_eq!(
            (list.passed, list.failures, list.skipped, list.score),
            (1, 1, 1, 50)
        );
        let table = list.table();
        assert!(table.contains("a      pass    fine\n"), "{table}");
        assert!(table.contains("data: {\"n\":1}"), "{table}");
        assert!(table.contains("b      FAIL    broken"), "{table}");
        assert!(table.contains("score 50/100 for http://x"), "{table}");
    }
}
