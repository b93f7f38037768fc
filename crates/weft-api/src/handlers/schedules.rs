//! `/v1/schedules`: apply cron schedules, read them with their next fire times, pause,
//! resume, trigger and delete them.
//!
//! A schedule arrives as a document, like a flow: JSON or YAML text, so both formats report
//! errors with the same paths (`cron`, `timezone`, `misfire.catch_up`).

#![allow(dead_code)] // The `*Doc` mirrors exist only for their schemas.

use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, RawBody, decode_json, is_json, media_type, unsupported};
use crate::openapi::ErrorBody;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use weft_engine::{Engine, ScheduleView};
use weft_store::{FiredTick, ScheduleRecord};

/// Media types read as YAML schedule documents.
const YAML_TYPES: &[&str] = &["application/yaml", "text/yaml", "application/x-yaml"];

/// A stored schedule.
#[derive(ToSchema)]
pub(crate) struct ScheduleDoc {
    /// The schedule document as applied (see docs/schedules.md); `paused` is its state now.
    #[schema(value_type = Object)]
    spec: Value,
    /// The next tick (epoch ms); null when the expression never fires again.
    next_fire_at: Option<i64>,
    /// The last tick fired (epoch ms), manual triggers excluded.
    last_fire_at: Option<i64>,
    /// Epoch milliseconds.
    created_at: i64,
    /// Epoch milliseconds.
    updated_at: i64,
    /// The next fire times (epoch ms) when asked for with `?next=N`; absent otherwise.
    upcoming: Option<Vec<i64>>,
}

/// Every schedule.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScheduleList {
    #[schema(value_type = Vec<ScheduleDoc>)]
    schedules: Vec<ScheduleRecord>,
}

/// A tick fired by a manual trigger.
#[derive(ToSchema)]
pub(crate) struct FiredTickDoc {
    schedule: String,
    /// When it fired (epoch ms).
    fire_time: i64,
    /// The run it started.
    run_id: Option<String>,
    /// False when the run already existed.
    created: bool,
    /// Why no run was started.
    error: Option<String>,
}

/// `POST /v1/schedules`: 201 when created, 200 when an existing schedule was replaced.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules",
    request_body(content = String, description = "A schedule document", content_type = "application/yaml"),
    responses((status = 201, description = "Schedule created", body = ScheduleDoc),
              (status = 200, description = "Schedule replaced", body = ScheduleDoc),
              (status = 400, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 422, description = "Invalid schedule; every problem in details, each naming its field", body = ErrorBody)))]
pub(crate) async fn apply(
    State(engine): State<Engine>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    match media_type(&headers).as_deref() {
        Some(m) if is_json(m) => {
            decode_json::<Value>(&body)?;
        }
        Some(m) if YAML_TYPES.contains(&m) => {}
        other => {
            return Err(unsupported(
                other,
                "Content-Type: application/json or application/yaml",
            ));
        }
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the schedule document is not UTF-8: {e}")))?;
    let (view, created) = engine.schedule_apply(text).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `GET /v1/schedules`.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, description = "Every schedule, by name", body = ScheduleList)))]
pub(crate) async fn list(State(engine): State<Engine>) -> Result<Json<ScheduleList>, ApiError> {
    Ok(Json(ScheduleList {
        schedules: engine.schedule_list().await?,
    }))
}

/// Query of `GET /v1/schedules/{name}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetQuery {
    /// How many upcoming fire times to list (0 to 100; default 0).
    next: Option<usize>,
}

/// `GET /v1/schedules/{name}?next=N`.
#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name"), GetQuery),
    responses((status = 200, body = ScheduleDoc), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(engine.schedule_get(&name, q.next.unwrap_or(0)).await?))
}

/// `DELETE /v1/schedules/{name}`: the schedule stops; its runs stay.
#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    engine.schedule_delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/schedules/{name}/pause`: no tick fires until it is resumed.
#[utoipa::path(post, path = "/v1/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = ScheduleDoc), (status = 404, body = ErrorBody)))]
pub(crate) async fn pause(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(engine.schedule_set_paused(&name, true).await?))
}

/// `POST /v1/schedules/{name}/resume`: fires again from its first tick after now (ticks
/// due while paused never fire).
#[utoipa::path(post, path = "/v1/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = ScheduleDoc), (status = 404, body = ErrorBody)))]
pub(crate) async fn resume(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(engine.schedule_set_paused(&name, false).await?))
}

/// `POST /v1/schedules/{name}/trigger`: starts a run now, paused or not.
#[utoipa::path(post, path = "/v1/schedules/{name}/trigger", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 201, description = "Run started", body = FiredTickDoc), (status = 404, body = ErrorBody)))]
pub(crate) async fn trigger(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<FiredTick>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(engine.schedule_trigger(&name).await?),
    ))
}
