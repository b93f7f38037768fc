//! `/v1/keys`: API keys over HTTP, for admins (`weft apikey` does the same on the data
//! directory, which is how the first key is made). A key created or revoked here takes
//! effect at once in this process: the gateway reloads its key set before answering.

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::gateway::Gateway;
use crate::openapi::ErrorBody;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use weft_store::ApiRole;

/// Longest key name accepted.
const MAX_NAME: usize = 200;

/// The key routes, for merging into the API's router.
pub(crate) fn routes<S>(gw: Arc<Gateway>) -> Router<S> {
    Router::new()
        .route("/v1/keys", get(list).post(create))
        .route("/v1/keys/{id}", delete(revoke))
        .with_state(gw)
}

/// `GET /v1/keys`: every key, revoked ones included, never their secrets or hashes.
#[utoipa::path(get, path = "/v1/keys", tag = "ops",
    responses((status = 200, body = serde_json::Value, description = "`{keys: [{id, name, role, created_at, revoked_at}]}`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(State(gw): State<Arc<Gateway>>) -> Result<Json<Value>, ApiError> {
    let keys = gw.engine.apikey_list().await?;
    Ok(Json(json!({ "keys": keys })))
}

/// Body of `POST /v1/keys`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    /// `viewer`, `operator` or `admin`.
    #[schema(value_type = String, example = "operator")]
    role: ApiRole,
    /// A label for people.
    name: Option<String>,
}

/// `POST /v1/keys`: 201 with the new key in `key` — the only time it is shown.
#[utoipa::path(post, path = "/v1/keys", tag = "ops", request_body = CreateKey,
    responses((status = 201, body = serde_json::Value, description = "`{id, name, role, created_at, key}`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn create(
    State(gw): State<Arc<Gateway>>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if body.name.as_ref().is_some_and(|n| n.len() > MAX_NAME) {
        return Err(ApiError::bad_request(format!(
            "name is longer than {MAX_NAME} bytes"
        )));
    }
    let issued = crate::issue_key(body.role, body.name, gw.engine.now_ms());
    let rec = gw.engine.apikey_create(&issued.record).await?;
    gw.keys.refresh().await?;
    let out = json!({
        "id": rec.id, "name": rec.name, "role": rec.role, "created_at": rec.created_at,
        "key": issued.token,
    });
    Ok((StatusCode::CREATED, Json(out)))
}

/// `DELETE /v1/keys/{id}`: revokes a key; it stops working at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "ops",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, body = serde_json::Value, description = "the revoked key"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn revoke(
    State(gw): State<Arc<Gateway>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = gw.engine.apikey_revoke(&id).await?;
    gw.keys.refresh().await?;
    Ok(Json(json!(rec)))
}
