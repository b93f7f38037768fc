//! `/v1/workers`: the processes executing attempts, with their queues and load.

use crate::openapi::WorkerDoc;
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

/// `GET /v1/workers`: embedded weft has one worker, this process.
#[utoipa::path(get, path = "/v1/workers", tag = "workers",
    responses((status = 200, body = WorkerList)))]
pub(crate) async fn list(State(engine): State<Engine>) -> Json<WorkerList> {
    Json(WorkerList {
        workers: engine.workers(),
    })
}
