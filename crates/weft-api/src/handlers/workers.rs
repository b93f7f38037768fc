//! `/v1/workers`: the processes executing attempts, with their queues and load.

use crate::error::ApiError;
use crate::openapi::{ErrorBody, WorkerDoc};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use weft_engine::{Engine, WorkerInfo};

/// Every worker.
#[derive(Serialize, ToSchema)]
pub(crate) struct WorkerList {
    #[schema(value_type = Vec<WorkerDoc>)]
    workers: Vec<WorkerInfo>,
}

/// `GET /v1/workers`: alone on its database weft has one worker, this process; in a
/// cluster, every process with the worker role that beat recently, whichever process is
/// asked.
#[utoipa::path(get, path = "/v1/workers", tag = "workers",
    responses((status = 200, body = WorkerList), (status = 503, body = ErrorBody)))]
pub(crate) async fn list(State(engine): State<Engine>) -> Result<Json<WorkerList>, ApiError> {
    Ok(Json(WorkerList {
        workers: engine.workers().await?,
    }))
}
