//! Cluster membership: every process of a cluster (gateways included) beats a row in the
//! store with its roles, the queues it serves and their load, its pool's size and whether
//! it drains, so that any process can list the cluster's members (`/v1/cluster`,
//! `/v1/workers`), not only itself, and `weft validate` can check them. The store stamps
//! each beat with its own clock, which gives each member's clock skew against it.
//!
//! A process that stops beating (it stopped, died or lost the database) drops out of the
//! list once its last beat is [`STALE_AFTER_LEASES`] leases old: by then its claims have
//! run out too, so the list never shows a worker that holds nothing any more for long.

use crate::config::ClusterConfig;
use crate::engine::{Engine, Inner};
use crate::error::EngineError;
use crate::manage::{QueueServed, WorkerInfo};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weft_core::time::Millis;
use weft_store::{MemberQueue, MemberRecord, StoreFacts};

/// One process of the cluster (any role), as of its last beat.
#[derive(Debug, Clone, Serialize)]
pub struct MemberInfo {
    /// The roles it takes (`gateway`, `orchestrator`, `worker`).
    pub roles: Vec<String>,
    /// Its identity, queues, load, pool and clock.
    #[serde(flatten)]
    pub process: WorkerInfo,
}

impl Engine {
    /// The roles this process takes: `weft up` takes all (workers unless told not to);
    /// `weft serve` those it was given.
    pub fn roles(&self) -> Vec<String> {
        roles(&self.inner)
    }

    /// True for a process of a cluster (`weft serve`), false for one alone on its database.
    pub fn in_cluster(&self) -> bool {
        self.inner.config.cluster.is_some()
    }

    /// The claim lease of a cluster process (members beat every third of it), `None` alone
    /// on a database.
    pub fn lease(&self) -> Option<Duration> {
        self.inner.config.cluster.as_ref().map(|c| c.lease)
    }

    /// The store's kind, connection limits and clock, read now.
    pub async fn store_facts(&self) -> Result<StoreFacts, EngineError> {
        Ok(self.inner.store.store_facts().await?)
    }

    /// Every process of the cluster whose last beat is younger than three leases, by node
    /// id; alone on its database, this process.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, EngineError> {
        let Some(cfg) = &self.inner.config.cluster else {
            let facts = self.inner.store.store_facts().await?;
            return Ok(vec![self.this_member(facts.pool_size)]);
        };
        let now = self.inner.now();
        let members = self.inner.store.member_list(now, stale_after(cfg)).await?;
        Ok(members.into_iter().map(|m| member_info(m, now)).collect())
    }

    /// This process, live (outside a cluster, where nothing beats).
    fn this_member(&self, pool_size: u32) -> MemberInfo {
        let queues = served(&self.inner);
        MemberInfo {
            roles: self.roles(),
            process: WorkerInfo {
                id: self.inner.worker_id.clone(),
                hostname: hostname(),
                pid: std::process::id(),
                load: queues.iter().map(|q| q.running).sum(),
                queues,
                started_at: self.inner.started_at,
                heartbeat_age_ms: 0,
                all_queues: serves_all(&self.inner),
                pool_size,
                ready: !self.inner.stopping.is_cancelled(),
                clock_skew_ms: None,
            },
        }
    }
}

/// A member's row as the API shows it, `now` being the reader's clock.
fn member_info(m: MemberRecord, now: Millis) -> MemberInfo {
    MemberInfo {
        roles: m.roles,
        process: WorkerInfo {
            id: m.node_id,
            hostname: m.hostname,
            pid: m.pid,
            queues: m
                .queues
                .into_iter()
                .map(|q| QueueServed {
                    name: q.name,
                    concurrency: q.concurrency,
                    running: q.running,
                })
                .collect(),
            started_at: m.started_at,
            heartbeat_age_ms: (now - m.beat_at).max(0) as u64,
            load: m.load,
            all_queues: m.all_queues,
            pool_size: m.pool_size,
            ready: m.ready,
            clock_skew_ms: m.store_beat_at.map(|db| m.beat_at - db),
        },
    }
}

/// True when this process's workers serve every queue (none named in the configuration).
fn serves_all(inner: &Inner) -> bool {
    inner.config.run_workers
        && inner
            .config
            .cluster
            .as_ref()
            .is_none_or(|c| c.worker_queues.is_empty())
}

/// The roles of this process, by name.
fn roles(inner: &Inner) -> Vec<String> {
    let (gateway, orchestrator) = match &inner.config.cluster {
        Some(cfg) => (cfg.gateway, cfg.orchestrator),
        None => (true, true),
    };
    [
        (gateway, "gateway"),
        (orchestrator, "orchestrator"),
        (inner.config.run_workers, "worker"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| name.to_string())
    .collect()
}

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
fn record(inner: &Inner, cfg: &ClusterConfig, pool_size: u32) -> MemberRecord {
    let queues: Vec<MemberQueue> = served(inner)
        .into_iter()
        .map(|q| MemberQueue {
            name: q.name,
            concurrency: q.concurrency,
            running: q.running,
        })
        .collect();
    MemberRecord {
        node_id: cfg.node_id.clone(),
        hostname: hostname(),
        pid: std::process::id(),
        roles: roles(inner),
        load: queues.iter().map(|q| q.running).sum(),
        queues,
        started_at: inner.started_at,
        beat_at: inner.now(),
        all_queues: serves_all(inner),
        pool_size,
        ready: !inner.stopping.is_cancelled(),
        store_beat_at: None,
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
    // The pool's size does not change; it is read once, when the store first answers.
    let mut pool_size = None;
    loop {
        if inner.stopping.is_cancelled() && inner.inflight_count.load(Ordering::SeqCst) == 0 {
            return;
        }
        if pool_size.is_none() {
            pool_size = inner.store.store_facts().await.ok().map(|f| f.pool_size);
        }
        let member = record(&inner, &cfg, pool_size.unwrap_or(0));
        match inner.store.member_beat(&member).await {
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

/// This machine's name, without a libc call: the kernel's, then `$HOSTNAME`. Members
/// report it, and `weft validate` uses it to tell which members run on its own machine.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
