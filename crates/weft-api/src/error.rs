//! The one error type every handler and extractor returns, so that every failure — a bad
//! flow, a missing run, malformed JSON, an unknown route — reaches the client in the same
//! shape: `{"error": {"code": "...", "message": "...", "details": [...]}}`.
//!
//! Codes are stable snake_case words clients can match on; messages are for people. A 500
//! never shows its cause to the client: the cause is logged with a request id, and the
//! client gets that id (in the body and the `x-request-id` header) to quote in a report.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use weft_core::Issue;
use weft_engine::EngineError;

/// Header that carries the id of a failed request.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// An API failure: a status, a stable code, a message and itemised details.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<Issue>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    details: &'a [Issue],
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds itemised problems (each with the path of the offending value).
    pub fn with_details(mut self, details: Vec<Issue>) -> Self {
        self.details = details;
        self
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal_error`; `cause` is logged, never sent.
    pub fn internal(cause: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", cause)
    }

    /// The `{"code", "message", "details"}` object alone, for one failed item of a batch
    /// (whose response as a whole succeeded). An internal error's cause is logged, not sent.
    pub fn item_body(&self) -> serde_json::Value {
        let message = if self.status.is_server_error() && self.code == "internal_error" {
            tracing::error!(cause = %self.message, "batch item failed");
            "internal error"
        } else {
            &self.message
        };
        serde_json::json!({ "code": self.code, "message": message, "details": self.details })
    }

    /// The HTTP status.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    #[cfg(test)]
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The itemised problems.
    #[cfg(test)]
    pub fn details(&self) -> &[Issue] {
        &self.details
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(spec) => {
                let n = spec.issues.len();
                let noun = if n == 1 { "problem" } else { "problems" };
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "flow_invalid",
                    format!("the flow document has {n} {noun}; see details"),
                )
                .with_details(spec.issues)
            }
            EngineError::ScheduleInvalid(spec) => {
                let n = spec.issues.len();
                let noun = if n == 1 { "problem" } else { "problems" };
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "schedule_invalid",
                    format!("the schedule document has {n} {noun}; see details"),
                )
                .with_details(spec.issues)
            }
            EngineError::BadRequest(m) => Self::bad_request(m),
            e @ EngineError::NotFound(_) => Self::not_found(e.to_string()),
            EngineError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            EngineError::Unavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            e @ EngineError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
            e @ EngineError::Internal(_) => Self::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.code == "internal_error" {
            let id = uuid::Uuid::now_v7().to_string();
            tracing::error!(request_id = %id, cause = %self.message, "request failed");
            let body = Envelope {
                error: Body {
                    code: self.code,
                    message: &format!("internal error; quote request id {id} when reporting it"),
                    details: &[],
                    request_id: Some(&id),
                },
            };
            let mut resp = (self.status, Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            return resp;
        }
        let body = Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
                details: &self.details,
                request_id: None,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::SpecError;

    #[test]
    fn engine_errors_map_to_stable_codes() {
        let cases = [
            (
                EngineError::Invalid(SpecError::one("nodes.a", "bad")),
                422,
                "flow_invalid",
            ),
            (EngineError::BadRequest("x".into()), 400, "bad_request"),
            (EngineError::NotFound("run r".into()), 404, "not_found"),
            (EngineError::Conflict("x".into()), 409, "conflict"),
            (EngineError::Unavailable("x".into()), 503, "unavailable"),
            (EngineError::ShuttingDown, 503, "shutting_down"),
            (EngineError::Internal("x".into()), 500, "internal_error"),
        ];
        for (e, status, code) in cases {
            let api = ApiError::from(e);
            assert_eq!(api.status().as_u16(), status);
            assert_eq!(api.code(), code);
        }
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause_and_carry_a_request_id() {
        let resp = ApiError::internal("disk on fire at /secret/path").into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let header = resp.headers()[REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_string();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "internal_error");
        assert_eq!(body["error"]["request_id"], header.as_str());
        assert!(!body.to_string().contains("secret"), "{body}");
    }
}
