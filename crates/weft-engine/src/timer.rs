//! Durable timers: delays and retry back-offs are rows with a due time. This loop sleeps
//! until the earliest one and asks the store to move due tasks forward; nothing per waiting
//! task is held in memory.

use crate::engine::Inner;
use std::sync::Arc;
use std::time::Duration;
use weft_core::time::Millis;

/// Longest the loop sleeps without checking the store, as a safety net.
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        let due = *inner.next_due.lock();
        let now = inner.now();
        let wait = match due {
            Some(d) if d <= now => Duration::ZERO,
            Some(d) => Duration::from_millis((d - now) as u64).min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = inner.timer_wake.notified() => continue,
                _ = inner.stopping.cancelled() => return,
            }
        }
        if inner.stopping.is_cancelled() {
            return;
        }
        // Cleared before promoting: the promotion reports the store's earliest timer, and
        // any write committed meanwhile merges its own.
        *inner.next_due.lock() = None;
        let now: Millis = inner.now();
        match inner.store.task_promote_due(now).await {
            Ok(fx) => inner.apply(fx),
            Err(e) => {
                tracing::warn!(error = %e, "promoting due timers failed; retrying");
                inner.merge_due(now + 1000);
            }
        }
    }
}
