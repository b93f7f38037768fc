//! `/v1/limits`: per-key concurrency limits in use, and changing a key's limit while weft
//! runs (docs/decisions/0009-keys-and-work-rate-limits.md).

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::openapi::ErrorBody;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use weft_engine::{Engine, KeyUsage};

/// A task holding a key's slot.
#[derive(ToSchema)]
#[allow(dead_code)] // schema only
pub(crate) struct TaskRefDoc {
    run_id: String,
    node: String,
}

/// One concurrency key in this process.
#[derive(ToSchema)]
#[allow(dead_code)] // schema only
pub(crate) struct KeyUsageDoc {
    /// The rendered key, e.g. `customer:42`.
    key: String,
    /// The limit in force (the run-time override if set, else the flow's).
    limit: u32,
    /// The run-time override, if set.
    override_limit: Option<u32>,
    /// Attempts holding the key's slots in this process.
    running: Vec<TaskRefDoc>,
    /// Tasks parked until a slot frees, in this process.
    waiting: u64,
}

/// Every key in use or with a run-time limit.
#[derive(Serialize, ToSchema)]
pub(crate) struct LimitList {
    #[schema(value_type = Vec<KeyUsageDoc>)]
    limits: Vec<KeyUsage>,
}

/// `GET /v1/limits`: the concurrency keys this process has running or parked tasks of,
/// and every key with a run-time limit.
#[utoipa::path(get, path = "/v1/limits", tag = "queues",
    responses((status = 200, body = LimitList)))]
pub(crate) async fn list(State(engine): State<Engine>) -> Json<LimitList> {
    Json(LimitList {
        limits: engine.limit_list(),
    })
}

/// Body of `PUT /v1/limits/{key}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitChange {
    /// Attempts with this key that may run at once (1 to 100000).
    concurrency: i64,
}

/// `PUT /v1/limits/{key}`: sets a key's concurrency limit, live and stored; it overrides
/// the limit the flows declare. `key` is the rendered key (`customer:42`), URL-encoded.
#[utoipa::path(put, path = "/v1/limits/{key}", tag = "queues", request_body = LimitChange,
    params(("key" = String, Path, description = "Rendered concurrency key")),
    responses((status = 200, body = KeyUsageDoc), (status = 400, body = ErrorBody)))]
pub(crate) async fn set(
    State(engine): State<Engine>,
    ApiPath(key): ApiPath<String>,
    ApiJson(change): ApiJson<LimitChange>,
) -> Result<Json<KeyUsage>, ApiError> {
    Ok(Json(engine.limit_set(&key, change.concurrency).await?))
}

/// `DELETE /v1/limits/{key}`: removes a key's run-time limit; the flows' limit applies again.
#[utoipa::path(delete, path = "/v1/limits/{key}", tag = "queues",
    params(("key" = String, Path, description = "Rendered concurrency key")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn clear(
    State(engine): State<Engine>,
    ApiPath(key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    engine.limit_clear(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}
