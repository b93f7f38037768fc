//! Checks a parsed scenario for values that cannot be run: empty step or phase lists, zero
//! weights, rates that are negative, not finite, too high or zero throughout a phase,
//! zero durations, absolute URLs, fields given to a step kind that does not use them.
//! The first problem found is returned, naming its field.

use super::{MAX_RATE, Phase, Scenario, Step, StepKind};
use crate::LoadtestError;
use crate::slo::Scope;
use std::time::Duration;

type Res = Result<(), LoadtestError>;

impl Scenario {
    /// Checks everything that can be checked without the server.
    pub fn validate(&self) -> Res {
        fn err(path: impl Into<String>, msg: impl Into<String>) -> LoadtestError {
            LoadtestError::scenario(path, msg)
        }
        if self.name.trim().is_empty() || self.name.contains(['/', '\\']) {
            return Err(err(
                "name",
                "must be non-empty and must not contain / or \\",
            ));
        }
        if self.connections == 0 || self.connections > 10_000 {
            return Err(err(
                "connections",
                format!("is {}; allowed 1..=10000", self.connections),
            ));
        }
        if self.max_in_flight < self.connections {
            return Err(err(
                "max_in_flight",
                format!(
                    "is {} but must be at least `connections` ({})",
                    self.max_in_flight, self.connections
                ),
            ));
        }
        positive("timeout", self.timeout)?;
        positive("abort_after", self.abort_after)?;
        positive("wait.poll_interval", self.wait.poll_interval)?;
        if self.wait.max_tracked == 0 {
            return Err(err("wait.max_tracked", "must be at least 1"));
        }
        if self.steps.is_empty() {
            return Err(err("steps", "needs at least one step"));
        }
        for (i, s) in self.steps.iter().enumerate() {
            step(&format!("steps[{i}]"), s)?;
            if self.steps[..i].iter().any(|o| o.name == s.name) {
                return Err(err(
                    format!("steps[{i}].name"),
                    format!(
                        "{:?} is used by an earlier step; give each step its own name",
                        s.name
                    ),
                ));
            }
        }
        if self.steps.iter().any(|s| s.kind == StepKind::GetRun)
            && !self.steps.iter().any(|s| s.kind == StepKind::StartRun)
        {
            return Err(err(
                "steps",
                "a get_run step reads runs this test started, so it needs a start_run step",
            ));
        }
        if self.phases.is_empty() {
            return Err(err("phases", "needs at least one phase"));
        }
        for (i, p) in self.phases.iter().enumerate() {
            phase(&format!("phases[{i}]"), p)?;
            if self.phases[..i].iter().any(|o| o.name == p.name) {
                return Err(err(
                    format!("phases[{i}].name"),
                    format!("{:?} is used by an earlier phase", p.name),
                ));
            }
        }
        for (i, slo) in self.slo.iter().enumerate() {
            if let Scope::Named(n) = &slo.scope
                && !self.steps.iter().any(|s| &s.name == n)
                && !self.phases.iter().any(|p| &p.name == n)
            {
                return Err(err(
                    format!("slo[{i}]"),
                    format!(
                        "{:?} names no step or phase; known: {}",
                        n,
                        self.known_scopes()
                    ),
                ));
            }
            if matches!(slo.scope, Scope::Completion) && !self.steps.iter().any(|s| s.wait) {
                return Err(err(
                    format!("slo[{i}]"),
                    "a completion SLO needs a start_run step with `wait: true`",
                ));
            }
        }
        Ok(())
    }

    fn known_scopes(&self) -> String {
        let names: Vec<&str> = self
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.phases.iter().map(|p| p.name.as_str()))
            .collect();
        names.join(", ")
    }
}

fn positive(path: &str, d: Duration) -> Res {
    if d.is_zero() {
        return Err(LoadtestError::scenario(path, "must be longer than zero"));
    }
    Ok(())
}

fn step(at: &str, s: &Step) -> Res {
    let err = |field: &str, msg: String| Err(LoadtestError::scenario(format!("{at}.{field}"), msg));
    if s.weight == 0 {
        return err("weight", "must be at least 1".into());
    }
    let kind = s.kind.as_str();
    let used: &[(&str, bool)] = &[
        ("flow", s.flow.is_some()),
        ("input", s.input.is_some()),
        ("wait", s.wait),
        ("limit", s.limit.is_some()),
        ("method", s.method.is_some()),
        ("path", s.path.is_some()),
        ("body", s.body.is_some()),
    ];
    let allowed: &[&str] = match s.kind {
        StepKind::StartRun => &["flow", "input", "wait"],
        StepKind::GetRun => &[],
        StepKind::ListRuns => &["flow", "limit"],
        StepKind::Request => &["method", "path", "body"],
    };
    for (field, given) in used {
        if *given && !allowed.contains(field) {
            return err(
                field,
                format!("is not used by a {kind} step; it takes: {}", list(allowed)),
            );
        }
    }
    match s.kind {
        StepKind::StartRun => match s.flow.as_deref() {
            None | Some("") => {
                return err("flow", "a start_run step needs the flow to start".into());
            }
            Some(f)
                if !f
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                return err(
                    "flow",
                    format!("{f:?} is not a flow name (letters, digits, - _ .)"),
                );
            }
            _ => {}
        },
        StepKind::ListRuns => {
            if let Some(f) = s.flow.as_deref()
                && (f.is_empty()
                    || !f
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
            {
                return err(
                    "flow",
                    format!("{f:?} is not a flow name (letters, digits, - _ .)"),
                );
            }
            if let Some(l) = s.limit
                && !(1..=1000).contains(&l)
            {
                return err("limit", format!("is {l}; allowed 1..=1000"));
            }
        }
        StepKind::Request => {
            let Some(path) = s.path.as_deref() else {
                return err("path", "a request step needs a path such as /health".into());
            };
            relative_path(path).or_else(|m| err("path", m))?;
            if let Some(m) = &s.method
                && !["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"].contains(&m.as_str())
            {
                return err(
                    "method",
                    format!("{m:?} is not one of GET, POST, PUT, DELETE, HEAD, PATCH"),
                );
            }
        }
        StepKind::GetRun => {}
    }
    Ok(())
}

/// Only paths on the target: `/...`, never a scheme, a `//host` or a backslash trick.
pub(crate) fn relative_path(path: &str) -> Result<(), String> {
    if path.contains("://") || !path.starts_with('/') || path.starts_with("//") {
        return Err(format!(
            "{path:?} must be a path relative to the target, starting with a single / (absolute URLs are not allowed: traffic goes only to the given target)"
        ));
    }
    if path.contains(['\\', ' ', '#', '\r', '\n']) || path.contains('@') {
        return Err(format!(
            "{path:?} contains a character not allowed in a path (\\, space, #, @)"
        ));
    }
    Ok(())
}

fn phase(at: &str, p: &Phase) -> Res {
    let err = |field: &str, msg: String| Err(LoadtestError::scenario(format!("{at}.{field}"), msg));
    positive(&format!("{at}.duration"), p.duration)?;
    match (p.rate, p.from, p.to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return err(
                "rate",
                "give either `rate` (constant) or `from` and `to` (ramp), not both".into(),
            );
        }
        (None, None, _) | (None, _, None) => {
            return err(
                "rate",
                "a phase needs `rate`, or `from` and `to` for a ramp".into(),
            );
        }
        _ => {}
    }
    let (from, to) = p.rates();
    for (field, v) in [("rate", p.rate), ("from", p.from), ("to", p.to)] {
        if let Some(v) = v
            && (!v.is_finite() || !(0.0..=MAX_RATE).contains(&v))
        {
            return err(
                field,
                format!("is {v}; arrivals per second must be within 0..={MAX_RATE}"),
            );
        }
    }
    if from == 0.0 && to == 0.0 {
        return err(
            if p.rate.is_some() { "rate" } else { "to" },
            "the rate is zero for the whole phase, so it sends nothing; for a pause use a small rate".into(),
        );
    }
    // Fewer than one arrival in the whole phase is certainly a mistake (e.g. `rate: 0.01` for 5s).
    if (from + to) / 2.0 * p.duration.as_secs_f64() < 1.0 {
        return err(
            "duration",
            format!(
                "at {from}..{to} arrivals/s a phase of {} sends no request; make it longer or faster",
                humantime::format_duration(p.duration)
            ),
        );
    }
    Ok(())
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "no extra fields".into()
    } else {
        items.join(", ")
    }
}
