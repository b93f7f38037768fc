//! Prometheus metrics: one recorder per process, HTTP request counts and latencies recorded
//! by a middleware around every route, and gauges read from the engine at scrape time.
//!
//! The recorder is global (the `metrics` facade allows one), so it is installed once, on
//! first use, and shared by every router a process builds — tests build many.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;
use weft_engine::Engine;

/// Latency buckets, in seconds: fine below 10 ms, where the API's targets are.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first call.
pub(crate) fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows only weft's gauges"
            );
        }
        handle
    })
}

/// Counts and times every request by method, matched route and status.
pub(crate) async fn record(req: Request, next: Next) -> Response {
    let began = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("weft_http_requests_total", &labels).increment(1);
    metrics::histogram!("weft_http_request_duration_seconds", &labels)
        .record(began.elapsed().as_secs_f64());
    resp
}

/// The Prometheus text, with the engine's live figures set just before rendering.
pub(crate) fn render(engine: &Engine, http_inflight: usize) -> String {
    let handle = handle();
    for q in engine.queue_list() {
        let name = q.name;
        metrics::gauge!("weft_queue_depth", "queue" => name.clone()).set(q.ready as f64);
        metrics::gauge!("weft_queue_running", "queue" => name.clone()).set(q.running as f64);
        metrics::gauge!("weft_queue_concurrency", "queue" => name.clone())
            .set(q.concurrency as f64);
        metrics::gauge!("weft_queue_oldest_ready_age_seconds", "queue" => name)
            .set(q.oldest_ready_age_ms as f64 / 1000.0);
    }
    metrics::gauge!("weft_attempts_inflight").set(engine.inflight() as f64);
    // Also set on every transition; set here too so an open breaker whose time is up reads
    // half-open even before its next call.
    for b in engine
        .breakers()
        .into_iter()
        .filter(|b| b.failure_threshold > 0)
    {
        metrics::gauge!("weft_circuit_state", "target" => b.target).set(b.state.gauge());
    }
    metrics::gauge!("weft_http_requests_inflight").set(http_inflight as f64);
    handle.run_upkeep();
    handle.render()
}
