//! `weft serve`'s share of the settings: which roles a process takes, its node id and the
//! `[cluster]` timings. `weft up` reads and checks them too but does not use them (it is one
//! process owning its store).

use super::{Config, de_duration};
use serde::Deserialize;
use std::time::Duration;
use weft_engine::{ClusterConfig, EngineConfig};

/// Longest `cluster.lease` and `cluster.leader_ttl` may be.
pub const MAX_LEASE: Duration = Duration::from_secs(300);
/// Longest `cluster.poll` may be.
pub const MAX_POLL: Duration = Duration::from_secs(60);
/// How often a leader renews its lease at most (and a follower tries to take it).
const MAX_LEADER_RETRY: Duration = Duration::from_secs(1);

/// The `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// How long a worker's claim on a task lasts without a heartbeat (heartbeats come every
    /// third of it), e.g. `15s`: how long the tasks of a killed worker wait before they are
    /// handed to another. Default [`weft_engine::DEFAULT_LEASE`].
    #[serde(deserialize_with = "de_duration")]
    pub lease: Duration,
    /// How long the leader's lease lasts without renewal: a killed leader is replaced within
    /// about this. Default [`weft_engine::DEFAULT_LEADER_TTL`].
    #[serde(deserialize_with = "de_duration")]
    pub leader_ttl: Duration,
    /// Longest an idle worker waits before asking the database for work again.
    /// Default 100ms.
    #[serde(deserialize_with = "de_duration")]
    pub poll: Duration,
    /// Queues a worker process claims from; empty means every queue. Default: empty.
    pub worker_queues: Vec<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        let c = ClusterConfig::new("");
        Self {
            lease: c.lease,
            leader_ttl: c.leader_ttl,
            poll: c.poll,
            worker_queues: Vec::new(),
        }
    }
}

impl ClusterSettings {
    /// Every problem with these values.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value, max) in [
            ("lease", self.lease, MAX_LEASE),
            ("leader_ttl", self.leader_ttl, MAX_LEASE),
            ("poll", self.poll, MAX_POLL),
        ] {
            if value.is_zero() || value > max {
                problems.push(format!(
                    "cluster.{key} = {}: must be longer than zero and at most {}",
                    humantime::format_duration(value),
                    humantime::format_duration(max)
                ));
            }
        }
        for q in &self.worker_queues {
            if !weft_core::is_valid_name(q) {
                problems.push(format!(
                    "cluster.worker_queues: {q:?} is not a valid queue name; use 1 to 128 \
                     letters, digits, `_`, `-` or `.`"
                ));
            }
        }
        problems
    }
}

/// A comma-separated list, trimmed, without empty items.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The roles a `weft serve` process takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    /// Serves the whole API and applies flow files.
    pub gateway: bool,
    /// May be elected leader: fires timers, hands back expired claims, applies retention.
    pub orchestrator: bool,
    /// Claims and runs tasks.
    pub worker: bool,
}

impl Roles {
    /// The role names, for logs and messages.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.gateway, "gateway"),
            (self.orchestrator, "orchestrator"),
            (self.worker, "worker"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// This machine's name: the kernel's, then `$HOSTNAME`, then `weft`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "weft".into())
}

impl Config {
    /// The configured node id, or `<hostname>-<pid>`.
    pub fn node_id_or_default(&self) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()))
    }

    /// The engine settings of a `weft serve` process with `roles`.
    pub fn cluster_engine_config(&self, roles: Roles) -> EngineConfig {
        let c = &self.cluster;
        let cluster = ClusterConfig {
            gateway: roles.gateway,
            orchestrator: roles.orchestrator,
            worker_queues: c.worker_queues.clone(),
            lease: c.lease,
            leader_ttl: c.leader_ttl,
            // A few tries per lease, so a short lease is still renewed in time.
            leader_retry: (c.leader_ttl / 4).min(MAX_LEADER_RETRY),
            poll: c.poll,
            ..ClusterConfig::new(self.node_id_or_default())
        };
        EngineConfig {
            run_workers: roles.worker,
            cluster: Some(cluster),
            ..self.engine_config()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cluster_settings_come_from_file_env_and_flags_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weft.toml");
        std::fs::write(
            &file,
            "node_id = \"from-file\"\n[cluster]\nlease = \"30s\"\nleader_ttl = \"10s\"\npoll = \"1s\"\nworker_queues = [\"a\", \"b\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &[], &Overrides::default()).unwrap();
        assert_eq!(c.node_id.as_deref(), Some("from-file"));
        assert_eq!(c.cluster.lease, Duration::from_secs(30));
        assert_eq!(c.cluster.leader_ttl, Duration::from_secs(10));
        assert_eq!(c.cluster.poll, Duration::from_secs(1));
        assert_eq!(c.cluster.worker_queues, ["a", "b"]);

        let e = env(&[
            ("WEFT_NODE_ID", "from-env"),
            ("WEFT_CLUSTER__LEASE", "20s"),
            ("WEFT_CLUSTER__WORKER_QUEUES", "email, default"),
        ]);
        let c = Config::load(Some(&file), &e, &Overrides::default()).unwrap();
        assert_eq!(c.node_id.as_deref(), Some("from-env"));
        assert_eq!(c.cluster.lease, Duration::from_secs(20));
        assert_eq!(c.cluster.leader_ttl, Duration::from_secs(10));
        assert_eq!(c.cluster.worker_queues, ["email", "default"]);

        let flags = Overrides {
            node_id: Some("from-flag".into()),
            lease: Some(Duration::from_secs(5)),
            worker_queues: Some(vec!["x".into()]),
            ..Overrides::default()
        };
        let c = Config::load(Some(&file), &e, &flags).unwrap();
        assert_eq!(c.node_id.as_deref(), Some("from-flag"));
        assert_eq!(c.cluster.lease, Duration::from_secs(5));
        assert_eq!(c.cluster.worker_queues, ["x"]);
    }

    #[test]
    fn defaults_are_the_engines_and_the_node_id_names_host_and_pid() {
        let c = Config::default();
        let engine = ClusterConfig::new("x");
        assert_eq!(c.cluster.lease, weft_engine::DEFAULT_LEASE);
        assert_eq!(c.cluster.leader_ttl, weft_engine::DEFAULT_LEADER_TTL);
        assert_eq!(c.cluster.poll, engine.poll);
        assert!(c.cluster.worker_queues.is_empty());
        let id = c.node_id_or_default();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
    }

    #[test]
    fn bad_cluster_settings_are_reported_together() {
        let e = env(&[
            ("WEFT_CLUSTER__LEASE", "0s"),
            ("WEFT_CLUSTER__LEADER_TTL", "10m"),
            ("WEFT_CLUSTER__WORKER_QUEUES", "ok,not ok"),
            ("WEFT_NODE_ID", " "),
        ]);
        let err = format!(
            "{:#}",
            Config::load(None, &e, &Overrides::default()).unwrap_err()
        );
        assert!(err.contains("cluster.lease = 0s"), "{err}");
        assert!(err.contains("cluster.leader_ttl = 10m"), "{err}");
        assert!(
            err.contains("\"not ok\" is not a valid queue name"),
            "{err}"
        );
        assert!(err.contains("node_id = \"\""), "{err}");
        let err = format!(
            "{:#}",
            Config::load(
                None,
                &env(&[("WEFT_CLUSTER__LEASES", "1s")]),
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(err.contains("did you mean WEFT_CLUSTER__LEASE?"), "{err}");
    }

    #[test]
    fn roles_shape_the_engine_config() {
        let c = Config {
            node_id: Some("n1".into()),
            ..Config::default()
        };
        let worker = c.cluster_engine_config(Roles {
            worker: true,
            ..Roles::default()
        });
        assert!(worker.run_workers);
        let cluster = worker.cluster.unwrap();
        assert_eq!(cluster.node_id, "n1");
        assert!(!cluster.orchestrator);
        assert!(cluster.leader_retry <= cluster.leader_ttl / 4);
        let orch = c.cluster_engine_config(Roles {
            orchestrator: true,
            ..Roles::default()
        });
        assert!(!orch.run_workers);
        assert!(orch.cluster.unwrap().orchestrator);
    }
}
