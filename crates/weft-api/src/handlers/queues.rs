//! `/v1/queues`: live queue figures, and changing a queue's concurrency or pause switch
//! while weft runs.

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use weft_engine::{Engine, QueueStats};

/// Every queue the engine knows.
#[derive(Serialize)]
pub(crate) struct QueueList {
    queues: Vec<QueueStats>,
}

/// `GET /v1/queues`.
pub(crate) async fn list(State(engine): State<Engine>) -> Json<QueueList> {
    Json(QueueList {
        queues: engine.queue_list(),
    })
}

/// Body of `PUT /v1/queues/{name}`; a field left out keeps its current value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueChange {
    concurrency: Option<u32>,
    paused: Option<bool>,
}

/// `PUT /v1/queues/{name}`: applies the change live and stores it.
pub(crate) async fn set(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
    ApiJson(change): ApiJson<QueueChange>,
) -> Result<Json<QueueStats>, ApiError> {
    let stats = engine
        .queue_set(&name, change.concurrency, change.paused)
        .await?;
    Ok(Json(stats))
}
