//! Concurrency keys and rate buckets shared by the worker processes of a cluster (decision
//! 0009 section 6).
//!
//! In a cluster a task that this process admits on its key still needs one of the key's
//! slots in the store (`LimitStore::key_acquire`), which counts the holds of every process.
//! If the key is full across the cluster the task gives its local slot back and parks at
//! the head of its key's line; the key is tried again after one poll interval, or at once
//! when one of this process's attempts of the key ends. A slot is given back when its
//! attempt ends; the heartbeat renews the slots of running attempts, so a dead worker's
//! slots free when their lease runs out.
//!
//! A start that this process's rate bucket allows is then taken from the cluster's bucket of
//! the same name (`LimitStore::rate_take`, one round trip): if another process took it, the
//! store answers when the next start is allowed and the task waits first in the local
//! bucket's line until then, exactly as a task over the local limit waits.
//!
//! Without a cluster none of this runs: the embedded store is one process and the in-memory
//! limiter is exact.

use super::{LimitWait, TaskRef, requeue};
use crate::cluster::ms;
use crate::engine::{Inner, TaskId};
use std::sync::Arc;
use weft_core::CompiledNode;
use weft_core::time::Millis;
use weft_store::{KeySlotHold, ReadyTask};

/// Takes a slot of `key` in the store for `task`; true if it has one (always, outside a
/// cluster). A store error counts as no slot: the task tries again after a poll.
pub(super) async fn acquire(
    inner: &Inner,
    node: Option<&CompiledNode>,
    key: &Arc<str>,
    task: &ReadyTask,
) -> bool {
    let Some(cfg) = &inner.config.cluster else {
        return true;
    };
    let limit = {
        let st = inner.limits.state.lock();
        let flow_limit = node
            .and_then(|n| n.concurrency.as_ref())
            .map_or(1, |c| c.limit);
        st.overrides.get(key).copied().unwrap_or(flow_limit)
    };
    let now = inner.now();
    let hold = KeySlotHold {
        key: key.to_string(),
        run_id: task.run_id.to_string(),
        node: task.node.to_string(),
        holder: cfg.node_id.clone(),
        lease_until: now + ms(cfg.lease),
    };
    match inner.store.key_acquire(&hold, limit, now).await {
        Ok(got) => got,
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "taking a key slot failed; trying again");
            false
        }
    }
}

/// Gives `task`'s slot of `key` back in the store (in a cluster). A failure leaves the slot
/// to expire with its lease.
pub(super) async fn release(inner: &Inner, key: &str, task: &ReadyTask) {
    if inner.config.cluster.is_none() {
        return;
    }
    if let Err(e) = inner.store.key_release(key, &task.run_id, &task.node).await {
        tracing::warn!(key = %key, error = %e, "giving a key slot back failed; it frees when its lease ends");
    }
}

/// Gives back, in the background, the store slots of tasks that will not start (their
/// runs were cancelled while they waited on a rate limit).
pub(super) fn release_all(inner: &Arc<Inner>, holds: Vec<(Arc<str>, TaskId)>) {
    if holds.is_empty() || inner.config.cluster.is_none() {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        for (key, (run_id, node)) in holds {
            if let Err(e) = inner.store.key_release(&key, &run_id, &node).await {
                tracing::warn!(key = %key, error = %e, "giving a key slot back failed");
            }
        }
    });
}

/// Takes a start of rate bucket `bucket` (`interval` µs apart) from the cluster's bucket in
/// the store: `None` if taken (always, outside a cluster), else how many µs until the next
/// start is allowed. A store error counts as refused for one poll interval.
pub(super) async fn take(inner: &Inner, bucket: &str, interval: u64) -> Option<u64> {
    let cfg = inner.config.cluster.as_ref()?;
    let now_us = inner.now().saturating_mul(1000);
    match inner.store.rate_take(bucket, interval, now_us).await {
        Ok(None) => None,
        Ok(Some(tat)) => Some(u64::try_from(tat - now_us).unwrap_or(0).max(1)),
        Err(e) => {
            tracing::warn!(bucket = %bucket, error = %e, "taking a rate-limited start failed; trying again");
            Some(cfg.poll.as_micros() as u64)
        }
    }
}

/// Tries `key`'s parked tasks again after one poll interval (once per key at a time).
pub(super) fn retry_later(inner: &Arc<Inner>, key: Arc<str>) {
    let Some(cfg) = &inner.config.cluster else {
        return;
    };
    {
        let mut st = inner.limits.state.lock();
        let Some(slots) = st.keys.get_mut(&key) else {
            return;
        };
        if slots.retry_armed {
            return;
        }
        slots.retry_armed = true;
    }
    let poll = cfg.poll;
    let inner = inner.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = inner.stopping.cancelled() => return,
        }
        let woken = {
            let mut st = inner.limits.state.lock();
            if let Some(slots) = st.keys.get_mut(&key) {
                slots.retry_armed = false;
            }
            st.fill(&key)
        };
        requeue(&inner, woken);
    });
}

/// Extends the key slots this process holds to `lease_until` (from the heartbeat).
pub(crate) async fn renew(inner: &Inner, holder: &str, lease_until: Millis) {
    if !inner
        .limits
        .enabled
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return;
    }
    if let Err(e) = inner.store.key_renew(holder, lease_until).await {
        tracing::warn!(error = %e, "renewing key slots failed; they free when their lease ends");
    }
}

/// In a cluster, a concurrency wait names the holders of the whole cluster (from the store)
/// rather than this process's.
pub(super) async fn with_cluster_holders(inner: &Inner, wait: LimitWait) -> LimitWait {
    let LimitWait::Concurrency {
        key,
        limit,
        holders,
    } = wait
    else {
        return wait;
    };
    if inner.config.cluster.is_none() {
        return LimitWait::Concurrency {
            key,
            limit,
            holders,
        };
    }
    let holders = match inner.store.key_holders(&key, inner.now()).await {
        Ok(found) => found
            .into_iter()
            .map(|h| TaskRef {
                run_id: h.run_id,
                node: h.node,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "reading key holders; listing this process's");
            holders
        }
    };
    LimitWait::Concurrency {
        key,
        limit,
        holders,
    }
}
