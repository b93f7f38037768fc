//! Line charts as inline SVG, drawn here so the report needs no script or network: time on
//! x (seconds), phases as shaded bands with their names, a few series with a legend.

use crate::report::Report;
use std::fmt::Write;

const W: f64 = 1000.0;
const H: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 32.0;

struct Series<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// Sent and failed requests per second.
pub(super) fn throughput(r: &Report) -> String {
    let x = |t: u32| t as f64 + 0.5;
    chart(
        r,
        "requests/s",
        &[
            Series {
                label: "sent/s",
                color: "#1a73e8",
                points: r
                    .timeline
                    .iter()
                    .map(|p| (x(p.t_s), p.sent as f64))
                    .collect(),
            },
            Series {
                label: "errors/s",
                color: "#d93025",
                points: r
                    .timeline
                    .iter()
                    .map(|p| (x(p.t_s), p.errors as f64))
                    .collect(),
            },
            Series {
                label: "dropped/s",
                color: "#f29900",
                points: r
                    .timeline
                    .iter()
                    .map(|p| (x(p.t_s), p.dropped as f64))
                    .collect(),
            },
        ],
    )
}

/// p50, p99 and max latency per second.
pub(super) fn latency(r: &Report) -> String {
    let x = |t: u32| t as f64 + 0.5;
    let pts = |f: fn(&crate::report::TimelinePoint) -> f64| {
        r.timeline
            .iter()
            .filter(|p| p.sent > 0)
            .map(|p| (x(p.t_s), f(p)))
            .collect()
    };
    chart(
        r,
        "ms",
        &[
            Series {
                label: "p50",
                color: "#1e8e3e",
                points: pts(|p| p.p50_ms),
            },
            Series {
                label: "p99",
                color: "#e37400",
                points: pts(|p| p.p99_ms),
            },
            Series {
                label: "max",
                color: "#a142f4",
                points: pts(|p| p.max_ms),
            },
        ],
    )
}

/// Queue depth and in-flight counts from `/metrics`, and resident memory when exposed.
pub(super) fn server(r: &Report) -> String {
    let s = &r.server.samples;
    let pick = |f: fn(&crate::report::ServerSample) -> Option<f64>| {
        s.iter()
            .filter_map(|p| f(p).map(|v| (p.t_s, v)))
            .collect::<Vec<_>>()
    };
    let mut out = chart(
        r,
        "count",
        &[
            Series {
                label: "queue depth (ready)",
                color: "#1a73e8",
                points: pick(|p| p.queue_depth),
            },
            Series {
                label: "running",
                color: "#1e8e3e",
                points: pick(|p| p.queue_running),
            },
            Series {
                label: "attempts in flight",
                color: "#e37400",
                points: pick(|p| p.attempts_inflight),
            },
            Series {
                label: "HTTP in flight",
                color: "#a142f4",
                points: pick(|p| p.http_inflight),
            },
        ],
    );
    let rss = pick(|p| p.rss_bytes.map(|b| b / 1_048_576.0));
    if !rss.is_empty() {
        out.push_str(&chart(
            r,
            "MiB",
            &[Series {
                label: "resident memory",
                color: "#5f6368",
                points: rss,
            }],
        ));
    }
    let cpu: Vec<(f64, f64)> = pick(|p| p.cpu_seconds)
        .windows(2)
        .map(|w| {
            (
                w[1].0,
                100.0 * (w[1].1 - w[0].1) / (w[1].0 - w[0].0).max(1e-3),
            )
        })
        .collect();
    if !cpu.is_empty() {
        out.push_str(&chart(
            r,
            "CPU %",
            &[Series {
                label: "server CPU",
                color: "#d93025",
                points: cpu,
            }],
        ));
    }
    out
}

/// A round number at or above `v`, so the axis reads well.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * mag)
}

fn chart(r: &Report, unit: &str, series: &[Series]) -> String {
    let total = r
        .scenario
        .phases
        .iter()
        .map(|p| p.duration.as_secs_f64())
        .sum::<f64>()
        .max(1.0);
    let ymax = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + pw * (x / total).clamp(0.0, 1.0);
    let sy = |y: f64| TOP + ph * (1.0 - (y / ymax).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"{unit} over time\" font-family=\"system-ui,sans-serif\" font-size=\"11\">"
    );
    // Phase bands.
    let mut start = 0.0;
    for (i, p) in r.scenario.phases.iter().enumerate() {
        let end = start + p.duration.as_secs_f64();
        let fill = if i % 2 == 0 { "#f5f7fa" } else { "#e9eef6" };
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{ph}\" fill=\"{fill}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#5b6577\">{}</text>",
            sx(start),
            sx(end) - sx(start),
            sx(start) + 4.0,
            TOP + 12.0,
            super::esc(&p.name)
        );
        start = end;
    }
    // Axes and grid.
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = sy(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#dde2ea\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#3b4456\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    for i in 0..=5 {
        let t = total * i as f64 / 5.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#3b4456\">{}s</text>",
            sx(t),
            H - BOTTOM + 16.0,
            fmt_num(t)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#3b4456\">{}</text>",
        4.0,
        TOP - 10.0,
        super::esc(unit)
    );
    // Series and legend.
    let mut lx = LEFT + 40.0;
    for se in series {
        if se.points.is_empty() {
            continue;
        }
        // Samples after the last phase (completion tracking) would pile up on the edge.
        let pts: Vec<String> = se
            .points
            .iter()
            .filter(|(x, _)| *x <= total)
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>",
            se.color,
            pts.join(" ")
        );
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#3b4456\">{}</text>",
            TOP - 14.0,
            se.color,
            lx + 16.0,
            TOP - 10.0,
            super::esc(se.label)
        );
        lx += 30.0 + 7.0 * se.label.len() as f64;
    }
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
