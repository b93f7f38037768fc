//! The gateway's protections, applied around every route in this order (outermost first):
//!
//! 1. metrics: every answer is counted, refusals included;
//! 2. load shedding: past `max_inflight_requests` a request gets 503 `overloaded` at once
//!    rather than a place in an unbounded queue; then the request timeout (503 `timeout`);
//! 3. the per-IP limit, then auth (401/403), then the per-key and per-class limits (429).
//!
//! So nothing a handler does — no run started, no flow stored — happens for a request that
//! was refused. `/health`, `/ready` and `/metrics` skip auth and limits (probes must not need
//! a key or be throttled); `/health` and `/metrics` are not shed either, so an overloaded
//! process still looks alive and can be observed.

use crate::auth::{self, Keys, Principal};
use crate::error::ApiError;
use crate::limits::{Class, Decision, Limiter, Limits};
use crate::{ApiOptions, metrics};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use weft_engine::Engine;

/// Routes that need no key and are never rate limited.
const OPEN_PATHS: &[&str] = &["/health", "/ready", "/metrics"];
/// Routes that are never shed.
const UNSHED_PATHS: &[&str] = &["/health", "/metrics"];

/// State the protections and the operations endpoints share.
pub(crate) struct Gateway {
    pub engine: Engine,
    pub keys: Arc<Keys>,
    pub started: Instant,
    inflight: Arc<Semaphore>,
    max_inflight: usize,
    timeout: Duration,
    trust_proxy: bool,
    per_ip: Option<Limiter>,
    per_key: Option<Limiter>,
    read: Option<Limiter>,
    write: Option<Limiter>,
    batch: Option<Limiter>,
}

impl Gateway {
    pub fn new(engine: Engine, opts: &ApiOptions) -> Arc<Self> {
        let Limits {
            per_ip,
            per_key,
            read,
            write,
            batch,
        } = opts.limits.clone();
        let max_inflight = opts.max_inflight_requests.max(1);
        // Installed now, not at the first scrape: counts before it would be lost.
        metrics::handle();
        Arc::new(Self {
            keys: Keys::new(engine.clone()),
            engine,
            started: Instant::now(),
            inflight: Arc::new(Semaphore::new(max_inflight)),
            max_inflight,
            timeout: opts.request_timeout,
            trust_proxy: opts.trust_proxy,
            per_ip: per_ip.map(Limiter::new),
            per_key: per_key.map(Limiter::new),
            read: read.map(Limiter::new),
            write: write.map(Limiter::new),
            batch: batch.map(Limiter::new),
        })
    }

    /// Requests being answered now.
    pub fn http_inflight(&self) -> usize {
        self.max_inflight - self.inflight.available_permits()
    }

    fn class_limiter(&self, class: Class) -> Option<&Limiter> {
        match class {
            Class::Read => self.read.as_ref(),
            Class::Write => self.write.as_ref(),
            Class::Batch => self.batch.as_ref(),
        }
    }

    /// The client's rate-limit key, `ip:<address>`: the socket peer, or with `trust_proxy`
    /// the last address in `X-Forwarded-For` (the one the proxy in front of weft appended).
    fn client_ip_key(&self, req: &Request) -> String {
        let ip = if self.trust_proxy {
            forwarded_for(req.headers())
        } else {
            None
        };
        match ip.or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        }) {
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".to_string(),
        }
    }
}

fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let all = headers.get("x-forwarded-for")?.to_str().ok()?;
    all.rsplit(',').next()?.trim().parse().ok()
}

/// Wraps every route of `router` in the protections.
pub(crate) fn protect<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    gw: Arc<Gateway>,
) -> Router<S> {
    router
        .layer(middleware::from_fn_with_state(gw.clone(), guard))
        .layer(middleware::from_fn_with_state(gw, shed))
        .layer(middleware::from_fn(metrics::record))
}

async fn shed(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    if UNSHED_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let Ok(_permit) = gw.inflight.clone().try_acquire_owned() else {
        let mut resp = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is handling as many requests as it allows; retry shortly",
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    match tokio::time::timeout(gw.timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {:?}; its effect, if any, may or may not have been applied",
                gw.timeout
            ),
        )
        .into_response(),
    }
}

async fn guard(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if OPEN_PATHS.contains(&path) {
        return next.run(req).await;
    }
    let method = req.method();
    let mut tightest: Option<Decision> = None;
    let ip_key = gw.client_ip_key(&req);
    if let Err(d) = take(&gw.per_ip, &ip_key, &mut tightest) {
        return limited(d);
    }
    // Each class has a limiter of its own, so a client's key is the same in all of them.
    let client = match gw.keys.authenticate(req.headers()).await {
        Err(resp) => return resp,
        Ok(Principal::Open) => ip_key,
        Ok(Principal::Key { id, role }) => {
            let need = auth::required_role(method, path);
            if role < need {
                return auth::forbidden(role, need, method, path);
            }
            if let Err(d) = take(&gw.per_key, &id, &mut tightest) {
                return limited(d);
            }
            format!("key:{id}")
        }
    };
    if let Some(l) = gw.class_limiter(Class::of(method, path))
        && let Err(d) = check(l, &client, &mut tightest)
    {
        return limited(d);
    }
    let mut resp = next.run(req).await;
    if let Some(d) = tightest {
        rate_headers(resp.headers_mut(), &d);
    }
    resp
}

/// Takes a token from `limiter` (if configured) for `key`, keeping the tightest decision;
/// the refusing decision when there was no token.
fn take(
    limiter: &Option<Limiter>,
    key: &str,
    tightest: &mut Option<Decision>,
) -> Result<(), Decision> {
    match limiter {
        Some(l) => check(l, key, tightest),
        None => Ok(()),
    }
}

fn check(l: &Limiter, key: &str, tightest: &mut Option<Decision>) -> Result<(), Decision> {
    let d = l.check(key);
    if tightest.is_none_or(|t| d.tighter_than(&t)) {
        *tightest = Some(d);
    }
    if d.allowed { Ok(()) } else { Err(d) }
}

/// 429 `rate_limited` with `Retry-After` and the `RateLimit-*` headers.
fn limited(d: Decision) -> Response {
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {} s", d.retry_after_secs),
    )
    .into_response();
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(d.retry_after_secs));
    rate_headers(h, &d);
    resp
}

fn rate_headers(h: &mut HeaderMap, d: &Decision) {
    h.insert("ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(d.reset_secs));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_takes_the_proxys_entry() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 10.0.0.9".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("10.0.0.9".parse().unwrap()));
        h.insert("x-forwarded-for", "junk".parse().unwrap());
        assert_eq!(forwarded_for(&h), None);
    }
}
