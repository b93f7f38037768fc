//! The one address a test may send traffic to. Every request the generator, the completion
//! tracker and the `/metrics` scraper make is built from a [`Target`] plus a relative path,
//! and redirects are never followed, so no traffic can go anywhere else.

use crate::LoadtestError;
use std::net::SocketAddr;

/// A weft gateway's base URL (`http://host[:port][/prefix]`) and its API key.
#[derive(Debug, Clone)]
pub struct Target {
    host: String,
    port: u16,
    prefix: String,
    authority: String,
    api_key: Option<String>,
}

impl Target {
    /// Parses `base_url`; only plain `http://` without credentials, query or fragment.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, LoadtestError> {
        let bad = |why: &str| LoadtestError::Target(format!("{base_url:?} {why}"));
        let rest = base_url.strip_prefix("http://").ok_or_else(|| {
            bad("must start with http:// (https is not supported by the load generator)")
        })?;
        if rest.contains(['?', '#']) {
            return Err(bad("must not have a query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("must not carry credentials; use --api-key"));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| bad("has no valid host[:port]"))?;
        if let Some(k) = &api_key
            && (k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(LoadtestError::Target(
                "the API key must be non-empty visible ASCII".into(),
            ));
        }
        Ok(Self {
            host: host.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
            authority: authority.to_string(),
            api_key,
        })
    }

    /// The base URL as given (normalised), for reports.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }

    /// The `Host` header value.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The API key, if any.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// The request target for a relative `path` (which starts with `/`).
    pub fn uri(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }

    /// Resolves the host once; every connection of the test goes to this address.
    pub async fn resolve(&self) -> Result<SocketAddr, LoadtestError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let mut addrs = tokio::net::lookup_host((host, self.port))
            .await
            .map_err(|e| {
                LoadtestError::Preflight(format!("cannot resolve {}: {e}", self.authority))
            })?;
        addrs.next().ok_or_else(|| {
            LoadtestError::Preflight(format!("{} resolves to no address", self.authority))
        })
    }
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if authority.is_empty() {
        return None;
    }
    // `[::1]:8080` keeps its brackets in the host; the colon search starts after them.
    let search_from = authority.find(']').map_or(0, |i| i + 1);
    match authority[search_from..].rfind(':') {
        Some(i) => {
            let at = search_from + i;
            let port = authority[at + 1..].parse().ok()?;
            let host = &authority[..at];
            (!host.is_empty()).then_some((host, port))
        }
        None => Some((authority, 80)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_base_urls_are_targets() {
        let t = Target::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(t.base_url(), "http://127.0.0.1:8080");
        assert_eq!(t.uri("/v1/runs"), "/v1/runs");
        let t = Target::new("http://gw.local/weft", None).unwrap();
        assert_eq!((t.port, t.uri("/health").as_str()), (80, "/weft/health"));
        let t = Target::new("http://[::1]:9000", None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("[::1]", 9000));
        for bad in [
            "https://x",
            "x:80",
            "http://u:p@x",
            "http://x/?a=1",
            "http://",
            "http://x:port",
        ] {
            assert!(Target::new(bad, None).is_err(), "{bad} accepted");
        }
        assert!(Target::new("http://x", Some("a b".into())).is_err());
    }
}
