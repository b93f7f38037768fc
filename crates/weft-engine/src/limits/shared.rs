//! Concurrency keys shared by the worker processes of a cluster (decision 0009 section 6).
//!
//! In a cluster a task that this process admits on its key still needs one of the key's
//! slots in the store (`LimitStore::key_acquire`), which counts the holds of every process.
//! If the key is full across the cluster the task gives its local slot back and parks at
//! the head of its key's line; the key is tried again after one poll interval, or at once
//! when one of this process's attempts of the key ends. A slot is given back when its
//! attempt ends; the heartbeat renews the slots of running attempts, so a dead worker's
//! slots free when their lease runs out. Without a cluster none of this runs: the embedded
//! store is one process and the in-memory limiter is exact.

use super::{LimitWait, TaskRef, requeue};
use crate::cluster::ms;
use crate::engine::Inner;
use std::sync::Arc;
use weft_core::CompiledNode;
use weft_core::time::Millis;
use weft_store::{KeySlotHold, ReadyTask};

/// Takes a slot of `key` in the store for `task`; true if it has one (always, outside a
/// cluster). A store error counts as no slot: the task tries again after a poll.
pub(super) async fn acquire(
    inner: &Inner,
    node: &CompiledNode,
    key: &Arc<str>,
    task: &ReadyTask,
) -> bool {
    let Some(cfg) = &inner.config.cluster else {
        return true;
    };
    let limit = {
        let st = inner.limits.state.lock();
        let flow_limit = node.concurrency.as_ref().map_or(1, |c| c.limit);
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
