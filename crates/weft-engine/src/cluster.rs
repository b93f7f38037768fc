//! Taking part in a cluster of weft processes that share one database.
//!
//! Workers claim ready tasks from the store under leases (see `worker::dispatch`) and a
//! heartbeat renews them; a task this process no longer holds (its run was cancelled
//! through another process, or its lease was reaped while this process could not reach
//! the database) has its attempt stopped. One process of the orchestrator role is elected
//! leader through a lease in the database and runs the singleton duties: handing back
//! expired claims and firing timers that other processes' writes created. Every process
//! also beats its membership (see `membership`), so any of them can list the workers.

use crate::engine::{Inner, TaskId};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weft_core::time::Millis;

/// The leader lease's name in the store.
pub const LEADER_DUTY: &str = "orchestrator";

/// How often the leader looks for due timers (timers written by this process fire on
/// time anyway; this bounds the delay for those written by others).
const TIMER_TICK: Duration = Duration::from_millis(100);

/// How often the served queues are looked up again when the configuration names none.
const DISCOVER_EVERY: Duration = Duration::from_secs(5);

/// Starts the cluster loops this process's roles call for. The leader loop's handle is
/// kept so that shutdown can wait for it to give the lease up.
pub(crate) fn start(inner: &Arc<Inner>) {
    let Some(cfg) = &inner.config.cluster else {
        return;
    };
    crate::membership::start(inner);
    if inner.config.run_workers {
        tokio::spawn(heartbeat(inner.clone()));
        tokio::spawn(discover(inner.clone()));
    }
    if cfg.orchestrator {
        *inner.leader_loop.lock() = Some(tokio::spawn(lead(inner.clone())));
    }
}

/// Longest shutdown waits for the leader loop to give its lease up.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// Waits (briefly) for the leader loop to end after `stopping`: it gives the lease up on
/// its way out, so another orchestrator takes over at once rather than after the TTL.
pub(crate) async fn stopped(inner: &Inner) {
    let handle = inner.leader_loop.lock().take();
    if let Some(handle) = handle
        && tokio::time::timeout(RELEASE_WAIT, handle).await.is_err()
    {
        tracing::warn!("the leader lease was not given up in time; it ends by itself");
    }
}

/// Gives the claimed tasks this process has not started back to the store (at shutdown),
/// so other workers take them now rather than after the lease, and tells them so.
pub(crate) async fn release_unstarted(inner: &Inner) {
    let Some(cfg) = &inner.config.cluster else {
        return;
    };
    let tasks = inner.drain_unstarted();

    if tasks.is_empty() {
        return;
    }
    match inner.store.task_release(&cfg.node_id, &tasks).await {
        Ok(n) => {
            tracing::info!(released = n, "gave back claimed tasks that had not started");
            let queues: HashSet<&str> = tasks.iter().map(|t| &*t.queue).collect();
            inner
                .store
                .announce_ready(&queues.into_iter().collect::<Vec<_>>());
        }
        Err(e) => {
            tracing::warn!(tasks = tasks.len(), error = %e, "cannot give back unstarted tasks; other workers get them when their lease ends")
        }
    }
}

/// A duration in the store's milliseconds (saturating: no setting comes near).
pub(crate) fn ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// Renews this worker's claims every third of the lease and stops attempts whose task is
/// no longer this worker's. Keeps going through shutdown until the last attempt is done,
/// so a draining worker does not lose its claims.
async fn heartbeat(inner: Arc<Inner>) {
    let Some(cfg) = inner.config.cluster.clone() else {
        return;
    };
    let every = cfg.lease / 3;
    let mut failing_since: Option<Millis> = None;
    loop {
        tokio::time::sleep(every).await;
        if inner.stopping.is_cancelled() && inner.inflight_count.load(Ordering::SeqCst) == 0 {
            return;
        }
        // Only attempts running before the call are judged: a claim that commits while
        // the heartbeat runs is not in its answer yet.
        let watched: Vec<TaskId> = inner.inflight.lock().keys().cloned().collect();
        let now = inner.now();
        match inner
            .store
            .task_heartbeat(&cfg.node_id, now + ms(cfg.lease))
            .await
        {
            Ok(held) => {
                crate::limits::renew(&inner, &cfg.node_id, now + ms(cfg.lease)).await;
                if let Some(since) = failing_since.take() {
                    tracing::info!(after_ms = now - since, "heartbeats reach the store again");
                }
                let held: HashSet<(&str, &str)> =
                    held.iter().map(|(r, n)| (r.as_str(), n.as_str())).collect();
                let inflight = inner.inflight.lock();
                for id in watched {
                    if !held.contains(&(&*id.0, &*id.1))
                        && let Some((_, token)) = inflight.get(&id)
                    {
                        tracing::warn!(run = %id.0, node = %id.1, "task is no longer this worker's (cancelled or reaped); stopping its attempt");
                        token.cancel();
                    }
                }
            }
            Err(e) => {
                let since = *failing_since.get_or_insert(now);
                tracing::warn!(error = %e, failing_ms = now - since, lease_ms = ms(cfg.lease), "heartbeat failed; claims are lost if this lasts longer than the lease");
            }
        }
    }
}

/// Creates a dispatcher for every queue this worker serves: the configured list, or
/// every queue known to the configuration, the stored settings and the applied flows.
async fn discover(inner: Arc<Inner>) {
    let Some(cfg) = inner.config.cluster.clone() else {
        return;
    };
    if !cfg.worker_queues.is_empty() {
        for q in &cfg.worker_queues {
            inner.queue(q);
        }
        return;
    }
    loop {
        let mut names: HashSet<String> = inner.config.queues.keys().cloned().collect();
        names.insert("default".into());
        match inner.store.queue_list().await {
            Ok(qs) => names.extend(qs.into_iter().map(|q| q.name)),
            Err(e) => tracing::warn!(error = %e, "cannot list queues"),
        }
        match inner.store.flow_list().await {
            Ok(flows) => {
                for f in flows {
                    let default_queue = f.spec.defaults.queue.clone();
                    for node in f.spec.nodes.values() {
                        if let Some(q) = node.queue.clone().or_else(|| default_queue.clone()) {
                            names.insert(q);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list flows to find their queues"),
        }
        for name in names {
            inner.queue(&name);
        }
        tokio::select! {
            _ = tokio::time::sleep(DISCOVER_EVERY) => {}
            _ = inner.stopping.cancelled() => return,
        }
    }
}

/// Seeks the leader lease and, while holding it, reaps expired claims and fires due
/// timers. Gives the lease up on shutdown so another orchestrator takes over at once.
async fn lead(inner: Arc<Inner>) {
    let Some(cfg) = inner.config.cluster.clone() else {
        return;
    };
    let ttl = ms(cfg.leader_ttl);
    let mut next_renew: Millis = 0;
    loop {
        if inner.stopping.is_cancelled() {
            if inner.is_leader.swap(false, Ordering::SeqCst)
                && let Err(e) = inner.store.leader_release(LEADER_DUTY, &cfg.node_id).await
            {
                tracing::warn!(error = %e, "cannot give up the leader lease; it ends by itself");
            }
            return;
        }
        let now = inner.now();
        if now >= next_renew {
            next_renew = now + ms(cfg.leader_retry);
            let leader = match inner
                .store
                .leader_acquire(LEADER_DUTY, &cfg.node_id, now, ttl)
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the store to hold or seek the leader lease");
                    false
                }
            };
            if inner.is_leader.swap(leader, Ordering::SeqCst) != leader {
                if leader {
                    tracing::info!(node = %cfg.node_id, "this process is now the leader");
                } else {
                    tracing::warn!(node = %cfg.node_id, "this process is no longer the leader");
                }
                crate::health::leader(leader);
            }
            if leader {
                match inner.store.task_reap(now).await {
                    Ok(fx) => {
                        if !fx.ready.is_empty() {
                            tracing::warn!(
                                tasks = fx.ready.len(),
                                "handed back tasks whose worker's lease expired"
                            );
                        }
                        inner.apply(fx);
                    }
                    Err(e) => tracing::warn!(error = %e, "reaping expired leases failed"),
                }
            }
        }
        if inner.is_leader.load(Ordering::SeqCst) {
            match inner.store.task_promote_due(inner.now()).await {
                Ok(fx) => inner.apply(fx),
                Err(e) => tracing::warn!(error = %e, "firing due timers failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TIMER_TICK) => {}
            _ = inner.stopping.cancelled() => {}
        }
    }
}
