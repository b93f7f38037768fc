//! The HTTP client behind every client command. It turns the server's error envelope and
//! transport failures into typed errors, so `main` can choose the exit code and every
//! command reports failures the same way.

use anyhow::Context;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Environment variable holding the API key client commands send (as a bearer token). An
/// environment variable rather than a flag, so the key stays out of shell history and `ps`.
pub const API_KEY_ENV: &str = "WEFT_API_KEY";

/// The server could not be reached at all (exit code 2).
#[derive(Debug)]
pub struct Unreachable {
    /// The server URL.
    pub url: String,
    /// The transport error.
    pub cause: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot reach weft at {}: is `weft up` running? ({})",
            self.url, self.cause
        )
    }
}

impl std::error::Error for Unreachable {}

/// The server answered with an error (exit code 1).
#[derive(Debug)]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: String,
    /// Human message.
    pub message: String,
    /// Itemised problems, `{path, message}` each.
    pub details: Vec<Value>,
}

impl ApiError {
    fn from_response(status: StatusCode, body: &[u8]) -> Self {
        let env: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let err = &env["error"];
        match (err["code"].as_str(), err["message"].as_str()) {
            (Some(code), Some(message)) => Self {
                code: code.to_string(),
                message: message.to_string(),
                details: err["details"].as_array().cloned().unwrap_or_default(),
            },
            // Not weft's envelope (a proxy, say): show what came back.
            _ => Self {
                code: format!("http_{}", status.as_u16()),
                message: String::from_utf8_lossy(body).chars().take(500).collect(),
                details: Vec::new(),
            },
        }
    }

    /// Each detail as `path: message`.
    pub fn detail_lines(&self) -> Vec<String> {
        self.details.iter().map(issue_line).collect()
    }
}

/// A `{path, message}` detail as one line.
pub fn issue_line(d: &Value) -> String {
    match (d["path"].as_str(), d["message"].as_str()) {
        (Some(""), Some(m)) | (None, Some(m)) => m.to_string(),
        (Some(p), Some(m)) => format!("{p}: {m}"),
        _ => d.to_string(),
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error ({}): {}", self.code, self.message)?;
        for line in self.detail_lines() {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A connection to one weft server.
pub struct Client {
    http: reqwest::Client,
    base: Url,
}

impl Client {
    /// A client for the server at `url`, sending the key in `WEFT_API_KEY` if set.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let key = std::env::var(API_KEY_ENV).ok();
        Self::with_key(url, key.as_deref(), None)
    }

    /// A client for the server at `url` sending `key` (if any, and not empty), whose
    /// requests each give up after `timeout` (none when `None`).
    pub fn with_key(
        url: &str,
        key: Option<&str>,
        timeout: Option<Duration>,
    ) -> anyhow::Result<Self> {
        let base = Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            anyhow::bail!("--url {url:?} must be an http:// or https:// URL");
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .with_context(|| format!("{API_KEY_ENV} is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("weft-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(timeout) = timeout {
            http = http.timeout(timeout);
        }
        let http = http.build().context("cannot build the HTTP client")?;
        Ok(Self { http, base })
    }

    /// The URL of `segments` under the base, each segment escaped.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("checked in new");
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// A request to `segments`.
    pub fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http.request(method, self.url(segments))
    }

    /// `GET` with query parameters (absent ones are left out).
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<Value> {
        let mut url = self.url(segments);
        for (k, v) in query {
            if let Some(v) = v {
                url.query_pairs_mut().append_pair(k, v);
            }
        }
        self.send(self.http.get(url)).await
    }

    /// `POST` a JSON body.
    pub async fn post(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.send(self.request(Method::POST, segments).json(body))
            .await
    }

    /// `PUT` a JSON body.
    pub async fn put(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.send(self.request(Method::PUT, segments).json(body))
            .await
    }

    /// `DELETE`.
    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.send(self.request(Method::DELETE, segments)).await
    }

    /// Sends a request; a 2xx answer's JSON (or `null` for an empty body) is returned.
    pub async fn send(&self, req: RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(ApiError::from_response(status, &body).into());
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("the server's answer ({status}) is not JSON"))
    }

    fn transport(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_timeout() {
            return Unreachable {
                url: self.base.as_str().trim_end_matches('/').to_string(),
                cause: "no answer within the time allowed".into(),
            }
            .into();
        }
        if e.is_connect() {
            // The innermost cause ("Connection refused") is the one worth showing.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(s) = cause.source() {
                cause = s;
            }
            return Unreachable {
                url: self.base.as_str().trim_end_matches('/').to_string(),
                cause: cause.to_string(),
            }
            .into();
        }
        anyhow::Error::new(e).context(format!("request to {} failed", self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped_under_the_base() {
        let c = Client::new("http://127.0.0.1:1/prefix/").unwrap();
        assert_eq!(
            c.url(&["v1", "runs", "a b/c"]).as_str(),
            "http://127.0.0.1:1/prefix/v1/runs/a%20b%2Fc"
        );
        let mut url = c.url(&["v1", "runs"]);
        url.query_pairs_mut().append_pair("flow", "a&b");
        assert_eq!(url.query(), Some("flow=a%26b"));
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("not a url").is_err());
    }

    #[test]
    fn error_envelopes_become_api_errors() {
        let body = br#"{"error":{"code":"flow_invalid","message":"2 problems","details":[{"path":"nodes.a","message":"bad"},{"path":"","message":"worse"}]}}"#;
        let e = ApiError::from_response(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(
            e.to_string(),
            "error (flow_invalid): 2 problems\n  nodes.a: bad\n  worse"
        );
        let e = ApiError::from_response(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.to_string(), "error (http_502): upstream down");
    }
}
