//! Cluster membership: every process of a cluster (gateways included) beats a row in the
//! store with its roles, the queues it serves and their load, so that any process can list
//! the cluster's workers (`/v1/workers`), not only itself.
//!
//! A process that stops beating (it stopped, died or lost the database) drops out of the
//! list once its last beat is [`STALE_AFTER_LEASES`] leases old: by then its claims have
//! run out too, so the list never shows a worker that holds nothing any more for long.

use crate::config::ClusterConfig;
use crate::engine::Inner;
use crate::manage::QueueServed;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weft_core::time::Millis;
use weft_store::{MemberQueue, MemberRecord};

/// A member is listed while its last beat is younger than this many leases.
pub const STALE_AFTER_LEASES: u32 = 3;

/// How old a member's last beat may be for it to be listed.
pub(crate) fn stale_after(cfg: &ClusterConfig) -> Millis {
    crate::cluster::ms(cfg.lease * STALE_AFTER_LEASES)
}

/// The queues this process's workers serve, with their load, by name.
pub(crate) fn served(inner: &Inner) -> Vec<QueueServed> {
    if !inner.config.run_workers {
        return Vec::new();
    }
    inner
        .queue_stats()
        .into_iter()
        .filter(|q| inner.serves(&q.name))
        .map(|q| QueueServed {
            name: q.name,
            concurrency: q.concurrency,
            running: q.running,
        })
        .collect()
}

/// Starts beating this process's membership every third of the lease, from now on.
pub(crate) fn start(inner: &Arc<Inner>) {
    if inner.config.cluster.is_some() {
        tokio::spawn(beat(inner.clone()));
    }
}

/// This process's row as of now.
fn record(inner: &Inner, cfg: &ClusterConfig) -> MemberRecord {
    let queues: Vec<MemberQueue> = served(inner)
        .into_iter()
        .map(|q| MemberQueue {
            name: q.name,
            concurrency: q.concurrency,
            running: q.running,
        })
        .collect();
    let roles = [
        (cfg.gateway, "gateway"),
        (cfg.orchestrator, "orchestrator"),
        (inner.config.run_workers, "worker"),
    ];
    MemberRecord {
        node_id: cfg.node_id.clone(),
        hostname: hostname(),
        pid: std::process::id(),
        roles: roles
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| name.to_string())
            .collect(),
        load: queues.iter().map(|q| q.running).sum(),
        queues,
        started_at: inner.started_at,
        beat_at: inner.now(),
    }
}

/// Beats until shutdown, and through it while attempts are still running (a draining
/// worker is still a worker); afterwards the row goes stale and drops out of the list.
async fn beat(inner: Arc<Inner>) {
    let Some(cfg) = inner.config.cluster.clone() else {
        return;
    };
    let every: Duration = cfg.lease / 3;
    let mut failing = false;
    loop {
        if inner.stopping.is_cancelled() && inner.inflight_count.load(Ordering::SeqCst) == 0 {
            return;
        }
        match inner.store.member_beat(&record(&inner, &cfg)).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("membership beats reach the store again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "membership beat failed; other processes stop listing this one if this lasts");
            }
            Err(_) => {}
        }
        tokio::time::sleep(every).await;
    }
}

/// This machine's name, without a libc call: the kernel's, then `$HOSTNAME`.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
