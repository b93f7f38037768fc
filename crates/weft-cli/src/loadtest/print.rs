//! Printing a load test's results: a table summary for people, or the JSON report (with the
//! baseline comparison, when asked) for programs. Both go to stdout.

use crate::output::{Table, print_json, print_stdout};
use serde_json::json;
use weft_loadtest::Report;
use weft_loadtest::baseline::Comparison;
use weft_loadtest::report::Counts;

/// The JSON report; with `--compare`, `{"report": ..., "comparison": ...}`.
pub fn json(r: &Report, cmp: Option<&Comparison>) {
    let report = serde_json::to_value(r).unwrap_or_default();
    match cmp {
        Some(c) => print_json(&json!({ "report": report, "comparison": c })),
        None => print_json(&report),
    }
}

/// Steps, phases, completion, generator, SLOs and the comparison as aligned tables.
pub fn table(r: &Report, cmp: Option<&Comparison>) {
    let mut t = Table::new(&[
        "SCOPE", "SENT", "REQ/S", "ERRORS", "DROPPED", "P50 MS", "P90", "P95", "P99", "MAX",
        "STATUS",
    ]);
    let mut add = |name: String, c: &Counts| {
        let l = &c.latency;
        let statuses: Vec<String> = c
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        t.row(vec![
            name,
            c.sent.to_string(),
            format!("{:.1}", c.throughput_rps),
            format!("{} ({:.2}%)", c.errors, c.error_rate_pct),
            c.dropped.to_string(),
            format!("{:.2}", l.p50),
            format!("{:.2}", l.p90),
            format!("{:.2}", l.p95),
            format!("{:.2}", l.p99),
            format!("{:.2}", l.max),
            statuses.join(" "),
        ]);
    };
    add("total".into(), &r.totals);
    for s in &r.steps {
        add(format!("step {}", s.name), &s.counts);
    }
    for p in &r.phases {
        add(format!("phase {}", p.name), &p.counts);
    }
    let mut out = t.render();
    if let Some(c) = &r.completion {
        let states: Vec<String> = c.by_state.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "\nrun completion (server created->finished): p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms; {} followed ({}), {} unfinished, {} not followed\n",
            c.latency.p50, c.latency.p95, c.latency.p99, c.latency.max, c.followed, states.join(", "), c.unfinished, c.not_followed
        ));
    }
    let g = &r.generator;
    out.push_str(&format!(
        "\ngenerator: send lag p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms; {} late; {} dropped; {} connections opened\n",
        g.send_lag.p50, g.send_lag.p99, g.send_lag.max, g.late, r.totals.dropped, g.connects
    ));
    if let Some(n) = &r.server.note {
        out.push_str(&format!("server figures: {n}\n"));
    }
    if !r.slo.is_empty() {
        let mut s = Table::new(&["SLO", "MEASURED", "THRESHOLD", "RESULT"]);
        for v in &r.slo {
            s.row(vec![
                v.slo.clone(),
                v.measured
                    .map_or("n/a".into(), |m| format!("{m:.2} {}", v.unit)),
                format!("{:.2} {}", v.threshold, v.unit),
                if v.passed {
                    "pass".into()
                } else {
                    "FAIL".into()
                },
            ]);
        }
        out.push('\n');
        out.push_str(&s.render());
    }
    if let Some(c) = cmp {
        out.push('\n');
        out.push_str(&c.render_table());
    }
    print_stdout(&out);
}
