//! Changing a queue's settings while weft runs (concurrency, pause switch, rate limit),
//! persistently and at once; and, in a cluster, picking up the settings that other
//! processes stored.

use crate::engine::Inner;
use crate::queue::QueueStats;
use crate::{Engine, EngineError};
use std::sync::Arc;
use weft_core::limits::{RateLimitSpec, compile_rate};
use weft_store::{QueueRate, QueueSettings};

/// Most attempts a queue may run at once.
pub const MAX_QUEUE_CONCURRENCY: u32 = 10_000;

/// A change of a queue's settings; a field left `None` keeps its current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueChange {
    /// Attempts that may run at once (1 to [`MAX_QUEUE_CONCURRENCY`]).
    pub concurrency: Option<u32>,
    /// Stop (true) or restart (false) handing out work.
    pub paused: Option<bool>,
    /// `Some(Some(rate))` sets the queue's rate limit (at most `limit` starts per `per`,
    /// no `key`), `Some(None)` removes it.
    pub rate: Option<Option<RateLimitSpec>>,
}

/// Checks a queue's rate limit as given; the error names the field (`rate.limit`,
/// `rate.per`), what is wrong and what is allowed.
pub fn queue_rate(spec: &RateLimitSpec) -> Result<QueueRate, EngineError> {
    let mut issues = Vec::new();
    if spec.key.is_some() {
        issues.push(weft_core::Issue::new(
            "rate.key",
            "a queue's rate limit has no key; put a keyed `rate_limit` on the node instead",
        ));
    }
    let compiled = compile_rate("rate", spec, &mut issues);
    let rate = compiled.and_then(|r| {
        let per_ms = u64::try_from(r.per.as_millis()).unwrap_or(u64::MAX);
        if per_ms == 0 {
            issues.push(weft_core::Issue::new(
                "rate.per",
                format!("must be at least 1ms, got {:?}", spec.per),
            ));
            return None;
        }
        Some(QueueRate {
            limit: r.limit,
            per_ms,
        })
    });
    match (rate, issues.is_empty()) {
        (Some(rate), true) => Ok(rate),
        _ => Err(EngineError::BadRequest(
            issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

impl Engine {
    /// Changes a queue's concurrency and/or pause switch, live and persistently.
    pub async fn queue_set(
        &self,
        name: &str,
        concurrency: Option<u32>,
        paused: Option<bool>,
    ) -> Result<QueueStats, EngineError> {
        self.queue_change(
            name,
            QueueChange {
                concurrency,
                paused,
                rate: None,
            },
        )
        .await
    }

    /// Changes a queue's settings, live and persistently: a new concurrency or rate limit
    /// applies to the next start; every process of a cluster picks the change up within a
    /// poll interval (see `apply_stored_settings`).
    pub async fn queue_change(
        &self,
        name: &str,
        change: QueueChange,
    ) -> Result<QueueStats, EngineError> {
        if !weft_core::is_valid_name(name) {
            return Err(EngineError::BadRequest(format!(
                "{name:?} is not a valid queue name: use letters, digits, `_`, `-` or `.`"
            )));
        }
        if change
            .concurrency
            .is_some_and(|c| c == 0 || c > MAX_QUEUE_CONCURRENCY)
        {
            return Err(EngineError::BadRequest(format!(
                "concurrency must be between 1 and {MAX_QUEUE_CONCURRENCY}"
            )));
        }
        let rate = match &change.rate {
            Some(Some(spec)) => Some(Some(queue_rate(spec)?)),
            Some(None) => Some(None),
            None => None,
        };
        let inner = &self.inner;
        let q = inner.queue(name);
        let cur = q.stats();
        let settings = QueueSettings {
            name: name.to_string(),
            concurrency: change.concurrency.unwrap_or(cur.concurrency),
            paused: change.paused.unwrap_or(cur.paused),
            rate: rate.unwrap_or_else(|| q.rate()),
        };
        inner.store.queue_put(&settings).await?;
        apply_rate(inner, name, settings.rate);
        q.configure(Some(settings.concurrency), Some(settings.paused));
        Ok(q.stats())
    }
}

/// Sets queue `name`'s rate limit in this process (switching the limiter on if needed).
pub(crate) fn apply_rate(inner: &Arc<Inner>, name: &str, rate: Option<QueueRate>) {
    if rate.is_some() {
        inner.limits.enable();
    }
    let q = inner.queue(name);
    q.set_rate(rate);
    let interval = Some(q.rate_interval_us()).filter(|&i| i > 0);
    inner.limits.rate_changed(inner, &q.rate_bucket, interval);
}

/// Applies the stored queue settings (from `weft queue set` on any process) to this
/// process's queues: the pause switch always, the concurrency and the rate limit unless
/// this process's configuration gives them (`[queues]`, `[queue_rates]` win, as at start).
/// Without it a queue paused through one gateway of a cluster kept running on the others.
pub(crate) fn apply_stored_settings(inner: &Arc<Inner>, stored: &[QueueSettings]) {
    for s in stored {
        let Some(q) = inner.known_queue(&s.name) else {
            continue;
        };
        let concurrency = Some(s.concurrency)
            .filter(|_| !inner.config.queues.contains_key(&s.name))
            .filter(|&c| c != q.limit());
        let paused = Some(s.paused).filter(|&p| p != q.paused());
        if concurrency.is_some() || paused.is_some() {
            q.configure(concurrency, paused);
        }
        if !inner.config.queue_rates.contains_key(&s.name) && q.rate() != s.rate {
            apply_rate(inner, &s.name, s.rate);
        }
    }
}
