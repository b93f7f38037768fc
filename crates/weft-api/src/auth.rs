//! API keys: their format, how they are issued and checked, and which role each route needs.
//!
//! A key reads `weft_<id>_<secret>`: the id finds the stored record, the secret proves
//! possession. Only SHA-256 of the secret is stored (keys are 256 random bits, so a fast hash
//! is enough; see docs/decisions/0004-api-key-hashing.md) and it is compared in constant time.
//!
//! Auth is on as soon as any unrevoked key exists. The gateway keeps the key set in memory
//! and a background task re-reads it from the store every [`KEY_REFRESH`], whether or not
//! requests arrive, so a request does not wait on the store and a key created or revoked by
//! `weft apikey` in another process takes effect within that interval — including the first
//! key, which turns auth on.

use crate::error::ApiError;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use weft_engine::Engine;
use weft_store::{ApiRole, NewApiKey};

/// How stale the in-memory key set may get before it is read again.
pub const KEY_REFRESH: Duration = Duration::from_secs(1);
/// A key set older than this (the refresher fell behind) is reloaded before it is used.
const KEY_STALE_MAX: Duration = Duration::from_secs(3);
/// Every key starts with this.
const PREFIX: &str = "weft_";
/// Random bytes in a key's id and in its secret.
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A freshly issued key: the text to hand to the user once, and the record to store.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The whole key, `weft_<id>_<secret>`; shown once, never stored.
    pub token: String,
    /// What the store keeps.
    pub record: NewApiKey,
}

/// Issues a new key with `role`.
pub fn issue_key(role: ApiRole, name: Option<String>, now_ms: i64) -> IssuedKey {
    let mut rng = rand::rng();
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let (id, secret) = (hex(&id), hex(&secret));
    IssuedKey {
        token: format!("{PREFIX}{id}_{secret}"),
        record: NewApiKey {
            hash: hex(&Sha256::digest(secret.as_bytes())),
            id,
            name,
            role,
            created_at: now_ms,
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits `weft_<id>_<secret>`.
fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// The least role a request needs: reads are for viewers (except keys); starting,
/// cancelling, retrying and replaying (any `POST` under `/v1/runs` or `/v1/dlq` but the
/// bulk discard) and pausing, resuming or triggering a schedule for operators; everything
/// else (flows, queues, applying schedules, deletes and discards, anything under
/// `/v1/keys`) for admins.
pub(crate) fn required_role(method: &Method, path: &str) -> ApiRole {
    if under(path, "/v1/keys") {
        ApiRole::Admin
    } else if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        ApiRole::Viewer
    } else if *method == Method::POST
        && ((under(path, "/v1/runs") || under(path, "/v1/dlq")) && path != "/v1/dlq/discard"
            || is_schedule_action(path))
    {
        ApiRole::Operator
    } else {
        ApiRole::Admin
    }
}

/// `/v1/schedules/{name}/pause`, `/resume` or `/trigger`.
fn is_schedule_action(path: &str) -> bool {
    path.strip_prefix("/v1/schedules/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(name, action)| {
            !name.is_empty() && matches!(action, "pause" | "resume" | "trigger")
        })
}

fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with(':'))
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// No key exists, so auth is off.
    Open,
    /// A valid key.
    Key { id: Arc<str>, role: ApiRole },
}

/// The unrevoked keys: id -> (SHA-256 of the secret, role).
type KeySet = HashMap<String, ([u8; 32], ApiRole)>;

/// The gateway's cached view of the stored keys.
pub(crate) struct Keys {
    engine: Engine,
    set: RwLock<Option<Arc<KeySet>>>,
    /// When the set was last loaded, in ms since `base` (an atomic: read on every request).
    loaded_ms: AtomicU64,
    base: Instant,
    /// Serializes loads (see [`Keys::refresh`]).
    load: tokio::sync::Mutex<()>,
}

impl Keys {
    /// A key cache over `engine`'s store, refreshed every [`KEY_REFRESH`] by a task that
    /// ends when the cache is dropped (with its router).
    pub fn new(engine: Engine) -> Arc<Self> {
        let keys = Arc::new(Self {
            engine,
            set: RwLock::new(None),
            loaded_ms: AtomicU64::new(0),
            base: Instant::now(),
            load: tokio::sync::Mutex::new(()),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(refresher(Arc::downgrade(&keys)));
        }
        keys
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Re-reads the keys from the store now.
    ///
    /// Loads are serialized (the refresher, a request finding the set stale, a key change
    /// over HTTP): overlapping reads could finish out of order and put back an older set.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let _serial = self.load.lock().await;
        self.reload().await
    }

    /// [`Keys::refresh`], with `load` held by the caller.
    async fn reload(&self) -> Result<(), ApiError> {
        let keys = self.engine.apikey_list().await?;
        let set: KeySet = keys
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .filter_map(|k| Some((k.id, (unhex32(&k.hash)?, k.role))))
            .collect();
        *self.set.write() = Some(Arc::new(set));
        self.loaded_ms.store(self.now_ms(), Ordering::Release);
        Ok(())
    }

    /// The key set: loaded on first use (failing closed), then refreshed in the background
    /// when stale.
    ///
    /// The refresher keeps the set under [`KEY_REFRESH`] old; should it fall behind (no
    /// runtime when the router was built, a stalled store), a request finding the set older
    /// than [`KEY_STALE_MAX`] reloads it itself rather than trusting it.
    async fn current(&self) -> Result<Arc<KeySet>, ApiError> {
        let fresh = |me: &Self| {
            let age = me
                .now_ms()
                .saturating_sub(me.loaded_ms.load(Ordering::Acquire));
            age < KEY_STALE_MAX.as_millis() as u64
        };
        if let Some(set) = self.set.read().clone()
            && fresh(self)
        {
            return Ok(set);
        }
        let _guard = self.load.lock().await;
        if (self.set.read().is_none() || !fresh(self))
            && let Err(e) = self.reload().await
        {
            let Some(old) = self.set.read().clone() else {
                return Err(e);
            };
            tracing::warn!(error = ?e, "cannot reload API keys; using the last set");
            return Ok(old);
        }
        Ok(self.set.read().clone().unwrap_or_default())
    }

    /// Identifies the sender of a request from its `Authorization` header.
    pub async fn authenticate(
        self: &Arc<Self>,
        headers: &HeaderMap,
    ) -> Result<Principal, Response> {
        let set = self.current().await.map_err(|e| {
            tracing::error!(error = ?e, "cannot load API keys; refusing requests until it can");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot check API keys right now; try again",
            )
            .into_response()
        })?;
        if set.is_empty() {
            return Ok(Principal::Open);
        }
        let token = bearer(headers).ok_or_else(|| {
            unauthorized("this server requires an API key: send `Authorization: Bearer <key>`")
        })?;
        let invalid = || unauthorized("the API key is not valid (unknown, revoked or malformed)");
        let (id, secret) = parse_token(token).ok_or_else(invalid)?;
        let (hash, role) = set.get(id).ok_or_else(invalid)?;
        let given: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !bool::from(given.ct_eq(hash)) {
            return Err(invalid());
        }
        Ok(Principal::Key {
            id: id.into(),
            role: *role,
        })
    }
}

/// Reloads the keys every [`KEY_REFRESH`] until the cache is dropped.
async fn refresher(keys: std::sync::Weak<Keys>) {
    let mut tick = tokio::time::interval(KEY_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(keys) = keys.upgrade() else { return };
        if let Err(e) = keys.refresh().await {
            tracing::warn!(error = ?e, "cannot refresh API keys; keeping the last set");
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// 401 `unauthorized`, with the challenge clients expect.
pub(crate) fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// 403 `forbidden`, naming the role the request needs.
pub(crate) fn forbidden(have: ApiRole, need: ApiRole, method: &Method, path: &str) -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{method} {path} needs the {need} role; this key is {have}"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_parse_and_hash_their_secret() {
        let k = issue_key(ApiRole::Admin, Some("ci".into()), 5);
        let (id, secret) = parse_token(&k.token).unwrap();
        assert_eq!(id, k.record.id);
        assert_eq!(id.len(), 2 * ID_BYTES);
        assert_eq!(secret.len(), 2 * SECRET_BYTES);
        assert_eq!(k.record.hash, hex(&Sha256::digest(secret.as_bytes())));
        assert!(!k.record.hash.contains(secret));
        assert!(unhex32(&k.record.hash).is_some());
        assert_ne!(issue_key(ApiRole::Admin, None, 5).token, k.token);
        assert_eq!(parse_token("weft__x"), None);
        assert_eq!(parse_token("nope_a_b"), None);
    }

    #[test]
    fn roles_follow_method_and_resource() {
        let role = |m: Method, p: &str| required_role(&m, p);
        assert_eq!(role(Method::GET, "/v1/flows"), ApiRole::Viewer);
        assert_eq!(role(Method::POST, "/v1/runs"), ApiRole::Operator);
        assert_eq!(role(Method::POST, "/v1/runs/x/cancel"), ApiRole::Operator);
        assert_eq!(role(Method::POST, "/v1/dlq/r/n/replay"), ApiRole::Operator);
        assert_eq!(role(Method::POST, "/v1/dlq/replay"), ApiRole::Operator);
        assert_eq!(role(Method::POST, "/v1/dlq/discard"), ApiRole::Admin);
        assert_eq!(role(Method::DELETE, "/v1/dlq/r/n"), ApiRole::Admin);
        assert_eq!(role(Method::POST, "/v1/flows"), ApiRole::Admin);
        assert_eq!(role(Method::PUT, "/v1/queues/q"), ApiRole::Admin);
        assert_eq!(role(Method::DELETE, "/v1/runs/x"), ApiRole::Admin);
        assert_eq!(role(Method::POST, "/v1/runsx"), ApiRole::Admin);
        assert_eq!(role(Method::GET, "/v1/keys"), ApiRole::Admin);
        assert_eq!(role(Method::GET, "/v1/schedules/s"), ApiRole::Viewer);
        assert_eq!(
            role(Method::POST, "/v1/schedules/s/pause"),
            ApiRole::Operator
        );
        assert_eq!(
            role(Method::POST, "/v1/schedules/s/trigger"),
            ApiRole::Operator
        );
        assert_eq!(role(Method::POST, "/v1/schedules"), ApiRole::Admin);
        assert_eq!(role(Method::DELETE, "/v1/schedules/s"), ApiRole::Admin);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
