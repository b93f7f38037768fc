//! `/v1/breakers`: the circuit breakers and latency figures of the targets (`host:port`) the
//! `http` and `email` nodes of this process have called.
//!
//! Breakers live in each worker process: in a cluster the answer is the asked process's
//! own view, not the cluster's.

use crate::openapi::ErrorBody;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use weft_engine::Engine;
use weft_engine::nodes::breaker::BreakerInfo;

/// Every target this process has called.
#[derive(Serialize, ToSchema)]
pub(crate) struct BreakerList {
    #[schema(value_type = Vec<BreakerDoc>)]
    breakers: Vec<BreakerInfo>,
}

/// One target's breaker (a schema-only mirror of the engine's record).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct BreakerDoc {
    /// `host:port`.
    target: String,
    /// `closed`, `half_open` or `open`.
    #[schema(example = "open")]
    state: String,
    /// Failures counted in the breaker's window now.
    failures_in_window: u64,
    /// The failure threshold in force (0 for a target no breaker guards).
    failure_threshold: u32,
    /// When it last opened (ms since the epoch), while open or half-open.
    opened_at: Option<i64>,
    /// When it lets a probe through (ms since the epoch), while open.
    next_probe_at: Option<i64>,
    /// The adaptive timeout the next call would get, in ms, for targets with one.
    adaptive_timeout_ms: Option<u64>,
    /// Successful calls' latencies known for adaptive timeouts.
    latency_samples: u64,
}

/// `GET /v1/breakers`: this process's circuit breakers, by target.
#[utoipa::path(get, path = "/v1/breakers", tag = "workers",
    responses((status = 200, body = BreakerList), (status = 503, body = ErrorBody)))]
pub(crate) async fn list(State(engine): State<Engine>) -> Json<BreakerList> {
    Json(BreakerList {
        breakers: engine.breakers(),
    })
}
