//! `/v1/flows`: apply flow documents and read stored versions.
//!
//! A flow arrives as a document, not as a request object: JSON or YAML text that the engine
//! parses, so both formats report errors with the same paths.

use super::diff::{FlowDiff, diff as diff_specs};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, RawBody, decode_json, is_json, media_type, unsupported};
use crate::openapi::{ErrorBody, FlowApplyDoc, FlowDoc};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use weft_engine::{Engine, FlowApplied};
use weft_store::FlowRecord;

/// Media types read as YAML flow documents.
const YAML_TYPES: &[&str] = &["application/yaml", "text/yaml", "application/x-yaml"];

/// `POST /v1/flows`: 201 when a new version was stored, 200 when nothing changed.
#[utoipa::path(post, path = "/v1/flows", tag = "flows",
    request_body(content = String, description = "A flow document", content_type = "application/yaml"),
    responses((status = 201, description = "New version stored", body = FlowApplyDoc),
              (status = 200, description = "Identical to the latest version", body = FlowApplyDoc),
              (status = 400, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 422, description = "Invalid flow; every problem in details", body = ErrorBody)))]
pub(crate) async fn apply(
    State(engine): State<Engine>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<FlowApplied>), ApiError> {
    let media = media_type(&headers);
    let json = match media.as_deref() {
        Some(m) if is_json(m) => true,
        Some(m) if YAML_TYPES.contains(&m) => false,
        other => {
            return Err(unsupported(
                other,
                "Content-Type: application/json or application/yaml",
            ));
        }
    };
    if json {
        // Syntax errors get the same 400 as any other malformed JSON body.
        decode_json::<serde_json::Value>(&body)?;
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the flow document is not UTF-8: {e}")))?;
    let applied = engine.flow_apply(text).await?;
    let status = if applied.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(applied)))
}

/// Flow versions: the latest of every flow, or every version of one.
#[derive(Serialize, ToSchema)]
pub(crate) struct FlowList {
    #[schema(value_type = Vec<FlowDoc>)]
    flows: Vec<FlowRecord>,
}

/// `GET /v1/flows`.
#[utoipa::path(get, path = "/v1/flows", tag = "flows",
    responses((status = 200, description = "The latest version of every flow", body = FlowList)))]
pub(crate) async fn list(State(engine): State<Engine>) -> Result<Json<FlowList>, ApiError> {
    Ok(Json(FlowList {
        flows: engine.flow_list().await?,
    }))
}

/// Query of `GET /v1/flows/{name}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetQuery {
    /// A stored version; the latest when absent.
    version: Option<u32>,
}

/// `GET /v1/flows/{name}?version=N`.
#[utoipa::path(get, path = "/v1/flows/{name}", tag = "flows",
    params(("name" = String, Path, description = "Flow name"), GetQuery),
    responses((status = 200, body = FlowDoc), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> Result<Json<FlowRecord>, ApiError> {
    Ok(Json(engine.flow_get(&name, q.version).await?))
}

/// `GET /v1/flows/{name}/versions`: every version, oldest first.
#[utoipa::path(get, path = "/v1/flows/{name}/versions", tag = "flows",
    params(("name" = String, Path, description = "Flow name")),
    responses((status = 200, body = FlowList), (status = 404, body = ErrorBody)))]
pub(crate) async fn versions(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<FlowList>, ApiError> {
    Ok(Json(FlowList {
        flows: engine.flow_versions(&name).await?,
    }))
}

/// `GET /v1/flows/{name}/versions/{version}`.
#[utoipa::path(get, path = "/v1/flows/{name}/versions/{version}", tag = "flows",
    params(("name" = String, Path, description = "Flow name"), ("version" = u32, Path, description = "Version, from 1")),
    responses((status = 200, body = FlowDoc), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn version(
    State(engine): State<Engine>,
    ApiPath((name, version)): ApiPath<(String, u32)>,
) -> Result<Json<FlowRecord>, ApiError> {
    Ok(Json(engine.flow_get(&name, Some(version)).await?))
}

/// Query of `GET /v1/flows/{name}/diff`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffQuery {
    /// The older version.
    from: u32,
    /// The newer version; the latest when absent.
    to: Option<u32>,
}

/// `GET /v1/flows/{name}/diff?from=1&to=2`: nodes added, removed and changed.
#[utoipa::path(get, path = "/v1/flows/{name}/diff", tag = "flows",
    params(("name" = String, Path, description = "Flow name"), DiffQuery),
    responses((status = 200, body = FlowDiff), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn diff(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Result<Json<FlowDiff>, ApiError> {
    let a = engine.flow_get(&name, Some(q.from)).await?;
    let b = engine.flow_get(&name, q.to).await?;
    Ok(Json(diff_specs(&a.spec, a.version, &b.spec, b.version)))
}

/// Answer to a delete.
#[derive(Serialize, ToSchema)]
pub(crate) struct FlowDeleted {
    name: String,
    /// How many versions were deleted.
    versions_deleted: u32,
}

/// `DELETE /v1/flows/{name}`: deletes every version; 409 while a run of it is queued or
/// running or has a dead task. Finished runs stay readable; the flow can no longer start
/// runs (404). Applying it again starts a new history at version 1.
#[utoipa::path(delete, path = "/v1/flows/{name}", tag = "flows",
    params(("name" = String, Path, description = "Flow name")),
    responses((status = 200, body = FlowDeleted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<FlowDeleted>, ApiError> {
    let versions_deleted = engine.flow_delete(&name).await?;
    Ok(Json(FlowDeleted {
        name,
        versions_deleted,
    }))
}
