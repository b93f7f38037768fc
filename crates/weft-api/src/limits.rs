//! Rate limits: token buckets per client IP, per API key and per endpoint class.
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; each request takes one.
//! Buckets live in sharded maps keyed by client, so concurrent clients rarely contend, and a
//! shard that grows large forgets its full buckets (a full bucket is the same as a new one),
//! which bounds memory without a sweeper task.
//!
//! The decision carries what the `RateLimit-*` headers and `Retry-After` need, so every
//! answer tells the client where it stands with its tightest limit.

use parking_lot::Mutex;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::time::Instant;

/// Default per-client-IP rate: generous, so benchmarks on loopback are not throttled.
pub const DEFAULT_PER_IP: Rate = Rate::per_second(50_000);
/// Default per-API-key rate.
pub const DEFAULT_PER_KEY: Rate = Rate::per_second(50_000);
/// Default rate of reads (`GET`) per client (key, or IP when auth is off).
pub const DEFAULT_READ: Rate = Rate::per_second(50_000);
/// Default rate of writes (`POST`, `PUT`, `DELETE`) per client.
pub const DEFAULT_WRITE: Rate = Rate::per_second(10_000);
/// Default rate of batch requests per client (each may carry up to 1,000 items).
pub const DEFAULT_BATCH: Rate = Rate::per_second(100);

/// Shards per limiter.
const SHARDS: usize = 16;
/// A shard with more buckets than this forgets the full ones.
const SHARD_SOFT_CAP: usize = 4096;

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens a bucket holds: the largest burst.
    pub burst: u32,
}

impl Rate {
    /// `n` requests per second, with a burst of `n`.
    pub const fn per_second(n: u32) -> Rate {
        Rate {
            per_second: n as f64,
            burst: n,
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s burst {}", self.per_second, self.burst)
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `N/s`, `N/m` or `N/h`, optionally followed by ` burst B` (default: N).
    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || format!("{s:?} is not a rate; write e.g. \"1000/s\" or \"60/m burst 10\"");
        let mut words = s.split_whitespace();
        let (n, unit) = words
            .next()
            .and_then(|r| r.split_once('/'))
            .ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => n,
            (Some("burst"), Some(b), None) => b.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        if n == 0 || burst == 0 {
            return Err(format!("{s:?}: a rate and its burst must be at least 1"));
        }
        Ok(Rate {
            per_second: n as f64 / secs,
            burst,
        })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Every limit the gateway applies; `None` turns one off.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Per client IP. Default [`DEFAULT_PER_IP`].
    pub per_ip: Option<Rate>,
    /// Per API key (when auth is on). Default [`DEFAULT_PER_KEY`].
    pub per_key: Option<Rate>,
    /// Reads per client. Default [`DEFAULT_READ`].
    pub read: Option<Rate>,
    /// Writes per client. Default [`DEFAULT_WRITE`].
    pub write: Option<Rate>,
    /// Batch requests per client. Default [`DEFAULT_BATCH`].
    pub batch: Option<Rate>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_ip: Some(DEFAULT_PER_IP),
            per_key: Some(DEFAULT_PER_KEY),
            read: Some(DEFAULT_READ),
            write: Some(DEFAULT_WRITE),
            batch: Some(DEFAULT_BATCH),
        }
    }
}

/// Endpoint classes, limited separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Read,
    Write,
    Batch,
}

impl Class {
    /// `GET`/`HEAD` read; other methods write, unless the path is a batch endpoint.
    pub fn of(method: &axum::http::Method, path: &str) -> Class {
        use axum::http::Method;
        if *method == Method::GET || *method == Method::HEAD {
            Class::Read
        } else if path.contains("/batch") || path.contains(":batch") {
            Class::Batch
        } else {
            Class::Write
        }
    }
}

/// Where a client stands with one limit after a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decision {
    pub allowed: bool,
    /// The bucket's size.
    pub limit: u32,
    /// Whole tokens left.
    pub remaining: u32,
    /// Seconds until the bucket is full again (rounded up).
    pub reset_secs: u64,
    /// Seconds until one token is available (rounded up, at least 1) when refused.
    pub retry_after_secs: u64,
}

impl Decision {
    /// True if `self` is a tighter limit than `other` (fewer requests left).
    pub fn tighter_than(&self, other: &Decision) -> bool {
        (!self.allowed && other.allowed) || self.remaining < other.remaining
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One rate applied per key.
pub(crate) struct Limiter {
    rate: Rate,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes a token from `key`'s bucket if there is one.
    pub fn check(&self, key: &str) -> Decision {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Decision {
        let Rate { per_second, burst } = self.rate;
        let cap = burst as f64;
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = shard.lock();
        if map.len() > SHARD_SOFT_CAP && !map.contains_key(key) {
            map.retain(|_, b| refill(b, now, per_second, cap) < cap);
        }
        // Looked up by `&str` first: a known client costs no allocation.
        if !map.contains_key(key) {
            map.insert(
                key.to_string(),
                Bucket {
                    tokens: cap,
                    at: now,
                },
            );
        }
        let bucket = map.get_mut(key).expect("inserted above");
        let tokens = refill(bucket, now, per_second, cap);
        let allowed = tokens >= 1.0;
        let left = if allowed { tokens - 1.0 } else { tokens };
        *bucket = Bucket {
            tokens: left,
            at: now,
        };
        drop(map);
        Decision {
            allowed,
            limit: burst,
            remaining: left.floor() as u32,
            reset_secs: ((cap - left) / per_second).ceil() as u64,
            retry_after_secs: (((1.0 - left) / per_second).ceil() as u64).max(1),
        }
    }
}

/// The bucket's tokens at `now`.
fn refill(b: &Bucket, now: Instant, per_second: f64, cap: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * per_second).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;
    use std::time::Duration;

    #[test]
    fn rates_parse_with_units_and_bursts() {
        assert_eq!("1000/s".parse::<Rate>().unwrap(), Rate::per_second(1000));
        let r: Rate = "60/m burst 10".parse().unwrap();
        assert_eq!((r.per_second, r.burst), (1.0, 10));
        let r: Rate = "7200/h".parse().unwrap();
        assert_eq!((r.per_second, r.burst), (2.0, 7200));
        for bad in [
            "",
            "10",
            "10/d",
            "x/s",
            "0/s",
            "5/s burst",
            "5/s burst 0",
            "5/s b 2",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn buckets_refuse_past_the_burst_and_refill() {
        let l = Limiter::new("2/s".parse().unwrap());
        let t0 = Instant::now();
        let d = l.check_at("a", t0);
        assert!(d.allowed && d.remaining == 1 && d.limit == 2);
        assert!(l.check_at("a", t0).allowed);
        let d = l.check_at("a", t0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 1);
        assert!(
            l.check_at("b", t0).allowed,
            "other keys have their own bucket"
        );
        assert!(l.check_at("a", t0 + Duration::from_millis(600)).allowed);
    }

    #[test]
    fn classes_follow_method_and_path() {
        assert_eq!(Class::of(&Method::GET, "/v1/runs"), Class::Read);
        assert_eq!(Class::of(&Method::POST, "/v1/runs"), Class::Write);
        assert_eq!(Class::of(&Method::DELETE, "/v1/flows/x"), Class::Write);
        assert_eq!(Class::of(&Method::POST, "/v1/runs/batch"), Class::Batch);
    }
}
