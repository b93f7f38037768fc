//! The `http` node: one shared keep-alive client for every request weft makes.

use serde_json::{Map, Value};
use std::time::Duration;
use weft_core::nodes::{DEFAULT_HTTP_FAIL_ON, HttpParams, ResponseFormat, StatusRange};
use weft_store::Outcome;

/// Largest response body kept as output.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// A pooled HTTP client.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// A client with keep-alive pooling; `connect_timeout` bounds connection set-up.
    pub fn new(connect_timeout: Duration, pool_idle_per_host: usize) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_max_idle_per_host(pool_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client builds");
        Self { client }
    }

    /// Makes the request described by `p`.
    pub async fn call(&self, p: &HttpParams) -> Outcome {
        match self.try_call(p).await {
            Ok(o) | Err(o) => o,
        }
    }

    async fn try_call(&self, p: &HttpParams) -> Result<Outcome, Outcome> {
        let fail = |error: String, retryable: bool| Outcome::Failed { error, retryable };
        let method = reqwest::Method::from_bytes(p.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| fail(format!("invalid method {:?}", p.method), false))?;
        let url = reqwest::Url::parse(&p.url)
            .map_err(|e| fail(format!("invalid url {:?}: {e}", p.url), false))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(
                format!("url {:?} must be http or https", p.url),
                false,
            ));
        }
        let mut req = self.client.request(method, url);
        for (k, v) in &p.headers {
            req = req.header(k, v);
        }
        match &p.body {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => req = req.body(s.clone()),
            Some(other) => req = req.json(other),
        }
        if let Some(t) = &p.timeout {
            let t = weft_core::duration::parse(t).map_err(|e| fail(e, false))?;
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| fail(describe(&e), true))?;
        let status = resp.status().as_u16();
        let mut headers = Map::new();
        for (k, v) in resp.headers() {
            if let Ok(v) = v.to_str() {
                headers.insert(k.as_str().to_string(), Value::String(v.to_string()));
            }
        }
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"));
        let bytes = resp.bytes().await.map_err(|e| fail(describe(&e), true))?;
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(fail(
                format!(
                    "response body is {} bytes; at most {MAX_RESPONSE_BYTES} are kept",
                    bytes.len()
                ),
                false,
            ));
        }
        let body = match p.response {
            ResponseFormat::Text => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            ResponseFormat::Json => serde_json::from_slice(&bytes)
                .map_err(|e| fail(format!("response is not JSON: {e}"), false))?,
            ResponseFormat::Auto if is_json && !bytes.is_empty() => serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
            ResponseFormat::Auto => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        let fail_on: Vec<StatusRange> = match &p.fail_on {
            Some(list) => list
                .iter()
                .filter_map(|s| StatusRange::parse(s).ok())
                .collect(),
            None => DEFAULT_HTTP_FAIL_ON
                .iter()
                .filter_map(|s| StatusRange::parse(s).ok())
                .collect(),
        };
        if fail_on.iter().any(|r| r.contains(status)) {
            let snippet: String = match &body {
                Value::String(s) => s.chars().take(200).collect(),
                other => other.to_string().chars().take(200).collect(),
            };
            // 4xx other than 408/429 will not change on retry; 5xx, 408 and 429 may.
            let retryable = status >= 500 || status == 408 || status == 429;
            return Err(fail(format!("HTTP {status}: {snippet}"), retryable));
        }
        Ok(Outcome::Succeeded(
            serde_json::json!({ "status": status, "headers": headers, "body": body }),
        ))
    }
}

/// The `host:port` a request to `url` goes to (the port defaulted from the scheme).
pub(crate) fn target(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    Some(format!(
        "{}:{}",
        url.host_str()?,
        url.port_or_known_default()?
    ))
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut msg = if e.is_timeout() {
        "request timed out".to_string()
    } else {
        e.to_string()
    };
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    #[test]
    fn target_is_host_and_port() {
        assert_eq!(
            super::target("https://api.example.com/v1?x=1").as_deref(),
            Some("api.example.com:443")
        );
        assert_eq!(
            super::target("http://127.0.0.1:8080/").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(super::target("http://[::1]:9/").as_deref(), Some("[::1]:9"));
        assert_eq!(super::target("not a url"), None);
    }
}
