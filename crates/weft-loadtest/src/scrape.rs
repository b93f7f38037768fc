//! Samples the server's own figures from its Prometheus `/metrics` during the test, on a
//! connection of its own to the same target. Only the few series the report shows are
//! parsed; a server without `/metrics` gives a note instead of samples.

use crate::client::Conn;
use crate::report::{ServerSample, ServerStats};
use crate::target::Target;
use hyper::Method;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Scrapes every `interval` until `stop` is set.
pub(crate) async fn scrape_loop(
    addr: SocketAddr,
    target: Arc<Target>,
    start: Instant,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> ServerStats {
    let mut conn = Conn::new(addr, target);
    let mut stats = ServerStats::default();
    let mut tick = tokio::time::interval(interval);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        match conn
            .call(Method::GET, "/metrics", None, Duration::from_secs(5))
            .await
        {
            Ok(a) if a.status == 200 => {
                let mut s = parse(&String::from_utf8_lossy(&a.body));
                s.t_s = start.elapsed().as_secs_f64();
                stats.samples.push(s);
            }
            Ok(a) if stats.samples.is_empty() => {
                stats.note = Some(format!("/metrics answered {}; no server figures", a.status));
                break;
            }
            // A failed scrape mid-test is a gap in the chart, not a reason to stop.
            _ => {}
        }
    }
    stats
}

/// The series of interest in Prometheus text format; labelled series are summed.
pub(crate) fn parse(text: &str) -> ServerSample {
    let mut s = ServerSample::default();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or("").trim();
        let slot = match name {
            "weft_queue_depth" => &mut s.queue_depth,
            "weft_queue_running" => &mut s.queue_running,
            "weft_attempts_inflight" => &mut s.attempts_inflight,
            "weft_http_requests_inflight" => &mut s.http_inflight,
            "process_cpu_seconds_total" => &mut s.cpu_seconds,
            "process_resident_memory_bytes" => &mut s.rss_bytes,
            _ => continue,
        };
        *slot = Some(slot.unwrap_or(0.0) + v);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn labelled_series_are_summed_and_others_ignored() {
        let s = super::parse(
            "# HELP weft_queue_depth x\n# TYPE weft_queue_depth gauge\nweft_queue_depth{queue=\"a\"} 3\nweft_queue_depth{queue=\"b c\"} 4\nweft_attempts_inflight 2\nweft_other 9\nprocess_resident_memory_bytes 1.5e6\n",
        );
        assert_eq!(s.queue_depth, Some(7.0));
        assert_eq!(s.attempts_inflight, Some(2.0));
        assert_eq!(s.rss_bytes, Some(1_500_000.0));
        assert_eq!(s.http_inflight, None);
    }
}
