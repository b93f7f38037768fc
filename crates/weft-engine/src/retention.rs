//! Retention: removing finished runs older than the configured age, as a periodic duty.
//!
//! A process that owns its store prunes on its own schedule. In a cluster only the leader
//! prunes, and only when it also takes the `retention` lease, whose length is the interval
//! between passes: the lease outlives the pass that took it, so it records when the last
//! pass ran. A new leader therefore picks the schedule up where the old one left it (no
//! pass is run twice in one interval, none is skipped for longer than the interval plus
//! the leader fail-over).

use crate::cluster::ms;
use crate::config::Retention;
use crate::engine::Inner;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weft_core::time::Millis;

/// The retention lease's name in the store.
pub const RETENTION_DUTY: &str = "retention";

/// How often the duty looks whether a pass is due.
const TICK: Duration = Duration::from_secs(1);

/// After a failed pass, how long until the next try (unless the interval is shorter).
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Runs retention passes until shutdown, when `EngineConfig::retention` is set.
pub(crate) async fn duty(inner: Arc<Inner>) {
    let Some(cfg) = inner.config.retention.clone() else {
        return;
    };
    // The first pass comes one tick after start, once the engine has settled.
    let mut next_due: Millis = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = inner.stopping.cancelled() => return,
        }
        let now = inner.now();
        if now < next_due {
            continue;
        }
        next_due = match take_turn(&inner, &cfg, now).await {
            Turn::Mine => pass(&inner, &cfg, now).await,
            Turn::NotUntil(at) => at,
        };
    }
}

enum Turn {
    /// This process runs the pass now.
    Mine,
    /// Not this process's turn: look again at this time.
    NotUntil(Millis),
}

/// Whether this process runs the pass due at `now`: always when it owns its store; in a
/// cluster, when it is the leader and takes the retention lease.
async fn take_turn(inner: &Inner, cfg: &Retention, now: Millis) -> Turn {
    let Some(cluster) = &inner.config.cluster else {
        return Turn::Mine;
    };
    if !inner.is_leader.load(Ordering::SeqCst) {
        return Turn::NotUntil(now + ms(TICK));
    }
    let store = &inner.store;
    match store
        .leader_acquire(RETENTION_DUTY, &cluster.node_id, now, ms(cfg.every))
        .await
    {
        Ok(true) => Turn::Mine,
        // The previous leader ran a pass less than an interval ago: the next is due when
        // its lease ends.
        Ok(false) => match store.leader_get(RETENTION_DUTY, now).await {
            Ok(Some((_, until))) => Turn::NotUntil(until),
            Ok(None) => Turn::NotUntil(now),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the retention lease");
                Turn::NotUntil(now + ms(TICK))
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot take the retention lease");
            Turn::NotUntil(now + ms(TICK))
        }
    }
}

/// One pass: removes finished runs created before `now - keep`. Returns when the next is due.
async fn pass(inner: &Inner, cfg: &Retention, now: Millis) -> Millis {
    let cutoff = now.saturating_sub(ms(cfg.keep));
    let began = std::time::Instant::now();
    match inner.store.run_prune(cutoff).await {
        Ok(pruned) => {
            crate::health::pruned(&pruned);
            if pruned.runs > 0 || !pruned.partitions.is_empty() {
                tracing::info!(
                    runs = pruned.runs,
                    partitions = ?pruned.partitions,
                    cutoff_ms = cutoff,
                    took_ms = began.elapsed().as_millis() as u64,
                    "retention removed finished runs"
                );
            }
            now + ms(cfg.every)
        }
        Err(e) => {
            tracing::warn!(error = %e, "retention pass failed; it is tried again");
            now + ms(cfg.every.min(RETRY_AFTER))
        }
    }
}
