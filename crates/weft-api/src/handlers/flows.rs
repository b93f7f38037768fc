//! `/v1/flows`: apply flow documents and read stored versions.
//!
//! A flow arrives as a document, not as a request object: JSON or YAML text that the engine
//! parses, so both formats report errors with the same paths.

use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, RawBody, decode_json, is_json, media_type, unsupported};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use weft_engine::{Engine, FlowApplied};
use weft_store::FlowRecord;

/// Media types read as YAML flow documents.
const YAML_TYPES: &[&str] = &["application/yaml", "text/yaml", "application/x-yaml"];

/// `POST /v1/flows`: 201 when a new version was stored, 200 when nothing changed.
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

/// The latest version of every flow.
#[derive(Serialize)]
pub(crate) struct FlowList {
    flows: Vec<FlowRecord>,
}

/// `GET /v1/flows`.
pub(crate) async fn list(State(engine): State<Engine>) -> Result<Json<FlowList>, ApiError> {
    Ok(Json(FlowList {
        flows: engine.flow_list().await?,
    }))
}

/// Query of `GET /v1/flows/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetQuery {
    /// A stored version; the latest when absent.
    version: Option<u32>,
}

/// `GET /v1/flows/{name}?version=N`.
pub(crate) async fn get(
    State(engine): State<Engine>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> Result<Json<FlowRecord>, ApiError> {
    Ok(Json(engine.flow_get(&name, q.version).await?))
}
