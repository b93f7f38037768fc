//! `/v1/queues`: live queue figures, and changing a queue's concurrency, pause switch or
//! rate limit while weft runs.

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::openapi::{ErrorBody, QueueStatsDoc, RateDoc};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use weft_core::limits::RateLimitSpec;
use weft_engine::{Engine, QueueChange as Change, QueueStats};

/// Every queue the engine knows.
#[derive(Serialize, ToSchema)]
pub(crate) struct QueueList {
    #[schema(value_type = Vec<QueueStatsDoc>)]
    queues: Vec<QueueStats>,
}

/// `GET /v1/queues`.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, body = QueueList)))]
pub(crate) async fn list(State(engine): State<Engine>) -> Json<QueueList> {
    Json(QueueList {
        queues: engine.queue_list(),
    })
}

/// Body of `PUT /v1/queues/{name}`; a field left out keeps its current value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueChange {
    /// Attempts that may run at once (1 to 10000).
    concurrency: Option<u32>,
    /// Stop (true) or restart (false) handing out work.
    paused: Option<bool>,
    /// At most `limit` starts per `per` for the queue's tasks, across every worker (on top
    /// of their nodes' limits); `null` removes the queue's rate limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateDoc>)]
    rate: Option<Option<RateLimitSpec>>,
}

/// Tells a `null` (`Some(None)`: clear) from a missing field (`None`: keep).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<RateLimitSpec>>, D::Error> {
    Option::<RateLimitSpec>::deserialize(d).map(Some)
}

/// `PUT /v1/queues/{name}`: applies the change live and stores it.
#[utoipa::path(put, path = "/v1/queues/{name}", tag = "queues", request_body = QueueChange,
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueStatsDoc), (status = 400, body = ErrorBody)))]
pub(crate) async fn set(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
    ApiJson(change): ApiJson<QueueChange>,
) -> Result<Json<QueueStats>, ApiError> {
    let change = Change {
        concurrency: change.concurrency,
        paused: change.paused,
        rate: change.rate,
    };
    let stats = engine.queue_change(&name, change).await?;
    Ok(Json(stats))
}

/// `POST /v1/queues/{name}/pause`: stops handing out the queue's work; nothing is lost.
#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueStatsDoc), (status = 400, body = ErrorBody)))]
pub(crate) async fn pause(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<QueueStats>, ApiError> {
    Ok(Json(engine.queue_set(&name, None, Some(true)).await?))
}

/// `POST /v1/queues/{name}/resume`.
#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueStatsDoc), (status = 400, body = ErrorBody)))]
pub(crate) async fn resume(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<QueueStats>, ApiError> {
    Ok(Json(engine.queue_set(&name, None, Some(false)).await?))
}
