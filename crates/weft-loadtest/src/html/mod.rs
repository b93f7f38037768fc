//! The HTML report: one self-contained file (inline CSS and SVG, no script, no network)
//! that reads offline: verdict, SLOs, per-step and per-phase tables, charts of latency and
//! throughput over time with the phases marked, the server's own figures, and any extra
//! sections a caller adds (`weft validate` adds its checklist).

mod svg;

use crate::report::{Counts, Report};
use std::fmt::Write;

/// A section a caller adds to the report, shown after the summary; all text is escaped.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// A paragraph under the heading.
    pub intro: Option<String>,
    /// Rows of the section's table.
    pub checks: Vec<Check>,
}

/// One row of a [`Section`].
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Pass, fail, or `None` for information only.
    pub passed: Option<bool>,
    /// What was found.
    pub detail: String,
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.meta{color:#5b6577;font-size:13px}table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{padding:5px 8px;border-bottom:1px solid #eceff4;text-align:right}th{background:#f5f7fa;color:#3b4456}
th:first-child,td:first-child{text-align:left}.pass{color:#137333;font-weight:600}.fail{color:#b3261e;font-weight:600}
.info{color:#5b6577}.badge{display:inline-block;padding:4px 12px;border-radius:12px;font-weight:700;color:#fff}
.badge.pass{background:#1e8e3e;color:#fff}.badge.fail{background:#c5221f;color:#fff}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}.card{background:#f5f7fa;border-radius:8px;padding:10px 14px;min-width:96px}
.card b{display:block;font-size:20px}.card span{font-size:12px;color:#5b6577}svg{background:#fff;border:1px solid #eceff4;border-radius:6px}
.legend{font-size:12px;color:#3b4456}.note{background:#fff4e5;border-left:4px solid #f29900;padding:8px 12px}";

/// Renders the report; `extra` sections come right after the summary.
pub fn render(r: &Report, extra: &[Section]) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let passed = r.passed();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>weft load test: {name}</title><style>{STYLE}</style></head><body>\
         <h1>Load test: {name} <span class=\"badge {cls}\">{verdict}</span></h1>\
         <div class=\"meta\">target {target} &middot; started {started} &middot; {dur:.1} s &middot; {conns} connections, max in flight {mif}</div>",
        name = esc(&r.scenario.name),
        cls = if passed { "pass" } else { "fail" },
        verdict = if passed { "PASS" } else { "FAIL" },
        target = esc(&r.target),
        started = esc(&r.started_at),
        dur = r.duration_s,
        conns = r.generator.connections,
        mif = r.generator.max_in_flight,
    );
    if let Some(a) = &r.aborted {
        let _ = write!(h, "<p class=\"note\"><b>Ended early:</b> {}</p>", esc(a));
    }
    cards(&mut h, r);
    for s in extra {
        section(&mut h, s);
    }
    slo_table(&mut h, r);
    h.push_str("<h2>Throughput over time</h2>");
    h.push_str(&svg::throughput(r));
    h.push_str("<h2>Latency over time</h2>");
    h.push_str(&svg::latency(r));
    h.push_str("<h2>Steps</h2>");
    counts_table(
        &mut h,
        r.steps.iter().map(|s| {
            (
                format!(
                    "{} <span class=\"info\">({})</span>",
                    esc(&s.name),
                    esc(&s.kind)
                ),
                &s.counts,
            )
        }),
    );
    h.push_str("<h2>Phases</h2>");
    counts_table(
        &mut h,
        r.phases.iter().map(|p| {
            let plan = if p.rate_from == p.rate_to {
                format!("{}/s", p.rate_from)
            } else {
                format!("{}&rarr;{}/s", p.rate_from, p.rate_to)
            };
            (
                format!(
                    "{} <span class=\"info\">({plan}, {}s)</span>",
                    esc(&p.name),
                    p.duration_s
                ),
                &p.counts,
            )
        }),
    );
    for p in &r.phases {
        let _ = write!(
            h,
            "<h3 style=\"font-size:14px\">Phase {} by step</h3>",
            esc(&p.name)
        );
        counts_table(&mut h, p.steps.iter().map(|s| (esc(&s.name), &s.counts)));
    }
    completion(&mut h, r);
    h.push_str("<h2>Server figures (from /metrics)</h2>");
    match &r.server.note {
        Some(n) if r.server.samples.is_empty() => {
            let _ = write!(h, "<p class=\"info\">{}</p>", esc(n));
        }
        _ => h.push_str(&svg::server(r)),
    }
    generator(&mut h, r);
    h.push_str("</body></html>\n");
    h
}

fn cards(h: &mut String, r: &Report) {
    let t = &r.totals;
    let card = |h: &mut String, v: String, label: &str| {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{v}</b><span>{label}</span></div>"
        );
    };
    h.push_str("<div class=\"cards\">");
    card(h, format!("{:.0}", t.throughput_rps), "requests/s");
    card(h, t.sent.to_string(), "sent");
    card(h, format!("{:.2}%", t.error_rate_pct), "errors");
    card(h, t.dropped.to_string(), "dropped");
    card(h, format!("{:.1} ms", t.latency.p50), "p50");
    card(h, format!("{:.1} ms", t.latency.p99), "p99");
    card(h, format!("{:.1} ms", t.latency.max), "max");
    h.push_str("</div>");
}

fn section(h: &mut String, s: &Section) {
    let _ = write!(h, "<h2>{}</h2>", esc(&s.title));
    if let Some(i) = &s.intro {
        let _ = write!(h, "<p>{}</p>", esc(i));
    }
    if s.checks.is_empty() {
        return;
    }
    h.push_str(
        "<table><tr><th>Check</th><th>Result</th><th style=\"text-align:left\">Detail</th></tr>",
    );
    for c in &s.checks {
        let (cls, label) = match c.passed {
            Some(true) => ("pass", "pass"),
            Some(false) => ("fail", "FAIL"),
            None => ("info", "info"),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{cls}\">{label}</td><td style=\"text-align:left\">{}</td></tr>",
            esc(&c.name),
            esc(&c.detail)
        );
    }
    h.push_str("</table>");
}

fn slo_table(h: &mut String, r: &Report) {
    h.push_str("<h2>SLOs</h2>");
    if r.slo.is_empty() {
        h.push_str("<p class=\"info\">The scenario sets no SLOs.</p>");
        return;
    }
    h.push_str("<table><tr><th>SLO</th><th>Measured</th><th>Threshold</th><th>Result</th></tr>");
    for s in &r.slo {
        let m = s
            .measured
            .map_or("n/a".into(), |m| format!("{m:.2} {}", s.unit));
        let (cls, label) = if s.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{m}</td><td>{:.2} {}</td><td class=\"{cls}\">{label}</td></tr>",
            esc(&s.slo),
            s.threshold,
            s.unit
        );
    }
    h.push_str("</table>");
}

fn counts_table<'a>(h: &mut String, rows: impl Iterator<Item = (String, &'a Counts)>) {
    h.push_str("<table><tr><th>Name</th><th>Sent</th><th>req/s</th><th>Errors</th><th>Dropped</th><th>p50 ms</th><th>p90</th><th>p95</th><th>p99</th><th>max</th><th style=\"text-align:left\">By status</th></tr>");
    for (name, c) in rows {
        let statuses: Vec<String> = c
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let l = &c.latency;
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{:.1}</td><td>{} ({:.2}%)</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td style=\"text-align:left\">{}</td></tr>",
            c.sent,
            c.throughput_rps,
            c.errors,
            c.error_rate_pct,
            c.dropped,
            l.p50,
            l.p90,
            l.p95,
            l.p99,
            l.max,
            esc(&statuses.join(", "))
        );
    }
    h.push_str("</table>");
}

fn completion(h: &mut String, r: &Report) {
    let Some(c) = &r.completion else { return };
    h.push_str("<h2>Run completion</h2>");
    let states: Vec<String> = c
        .by_state
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = write!(
        h,
        "<p>{} runs followed ({} not followed, over the tracking limit); finished {}; {} unfinished when the wait ended; {} polls.</p>",
        c.followed,
        c.not_followed,
        esc(&states.join(", ")),
        c.unfinished,
        c.polls
    );
    h.push_str("<table><tr><th>Latency</th><th>Count</th><th>p50 ms</th><th>p90</th><th>p95</th><th>p99</th><th>max</th></tr>");
    for (label, l) in [
        ("server: created &rarr; finished", &c.latency),
        (
            "client: start sent &rarr; seen finished",
            &c.observed_latency,
        ),
    ] {
        let _ = write!(
            h,
            "<tr><td>{label}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            l.count, l.p50, l.p90, l.p95, l.p99, l.max
        );
    }
    h.push_str("</table>");
}

fn generator(h: &mut String, r: &Report) {
    let g = &r.generator;
    let _ = write!(
        h,
        "<h2>The generator</h2><p class=\"info\">Send lag (intended send time &rarr; request handed to its connection): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (of which the schedule thread: p99 {:.3} ms); {} requests left more than {} ms late; {} connections opened. Latencies above are measured from the intended send time, so queueing in the generator is counted, not hidden.</p>",
        g.send_lag.p50,
        g.send_lag.p99,
        g.send_lag.max,
        g.schedule_lag.p99,
        g.late,
        crate::generator::LATE_AFTER.as_millis(),
        g.connects
    );
}
