//! Extractors that turn every kind of bad input into an [`ApiError`], so a client sees one
//! error shape whether the body was too large, not JSON, of the wrong type or carried an
//! unknown field. axum's own extractors answer such requests in plain text.
//!
//! JSON bodies are decoded through `serde_path_to_error`, so a type error or unknown field
//! names the path of the offending value (`input`, `concurrency`), as flow errors do.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use weft_core::Issue;

/// The raw request body, within the router's size limit.
pub(crate) struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(body_error)
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is larger than this server accepts",
        )
    } else {
        ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
    }
}

/// The media type of a request (`application/json`), lower-cased, without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = raw.split(';').next().unwrap_or("").trim();
    Some(essence.to_ascii_lowercase())
}

/// True for `application/json` and `application/*+json`.
pub(crate) fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// 415 for a body whose type the endpoint does not read.
pub(crate) fn unsupported(media: Option<&str>, accepted: &str) -> ApiError {
    let got = match media {
        Some(m) => format!("Content-Type {m:?}"),
        None => "no Content-Type".to_string(),
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("request has {got}; send {accepted}"),
    )
}

/// A JSON request body decoded into `T`.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let media = media_type(req.headers());
        if !media.as_deref().is_some_and(is_json) {
            return Err(unsupported(
                media.as_deref(),
                "Content-Type: application/json",
            ));
        }
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        check_object(&bytes)?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// Every request body is a JSON object; serde would also read a struct from an array.
fn check_object(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the request body is empty; send a JSON object",
        )),
        Some(b'{') => Ok(()),
        Some(_) => {
            decode_json::<serde::de::IgnoredAny>(bytes)?;
            Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ))
        }
    }
}

/// Decodes JSON, naming the path of a type error or unknown field.
pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = clean_path(&e.path().to_string());
        json_error(path, e.into_inner())
    })?;
    // Trailing characters after the value are a syntax error too.
    de.end().map_err(|e| json_error(String::new(), e))?;
    Ok(value)
}

fn json_error(path: String, e: serde_json::Error) -> ApiError {
    if e.is_syntax() || e.is_eof() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the request body is not valid JSON: {e}"),
        );
    }
    let message = strip_position(&e.to_string());
    let summary = if path.is_empty() {
        format!("invalid request body: {message}")
    } else {
        format!("invalid request body at `{path}`: {message}")
    };
    ApiError::bad_request(summary).with_details(vec![Issue::new(path, message)])
}

/// serde_path_to_error writes `.` for the root and `?` for positions it cannot name.
fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.replace(".?", "").trim_start_matches('.').to_string()
    }
}

/// serde_json appends " at line 1 column 9" to data errors; the path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

/// Query parameters decoded into `T`.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Path parameters decoded into `T`.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) if e.status().is_server_error() => Err(ApiError::internal(e.body_text())),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        name: String,
        #[serde(default)]
        limit: Option<u32>,
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        let e = decode_json::<Req>(br#"{"name": "#).unwrap_err();
        assert_eq!(e.code(), "malformed_json");
        let e = decode_json::<Req>(br#"{"name": "a"} x"#).unwrap_err();
        assert_eq!(e.code(), "malformed_json");
    }

    #[test]
    fn bodies_must_be_objects() {
        assert_eq!(check_object(b"  ").unwrap_err().code(), "malformed_json");
        assert_eq!(check_object(b"[1").unwrap_err().code(), "malformed_json");
        assert_eq!(check_object(b" [1]").unwrap_err().code(), "bad_request");
        assert!(check_object(b" {}").is_ok());
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = decode_json::<Req>(br#"{"name": "a", "limit": "ten"}"#).unwrap_err();
        assert_eq!(e.code(), "bad_request");
        assert_eq!(e.details()[0].path, "limit");
    }

    #[test]
    fn media_types_ignore_parameters_and_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
    }
}
