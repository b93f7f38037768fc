//! Engine settings.

pub use crate::events::{DEFAULT_EVENT_BUFFER, DEFAULT_SUBSCRIBER_LAG};
use std::collections::BTreeMap;
use std::time::Duration;

/// Concurrency of a queue that no configuration names.
pub const DEFAULT_CONCURRENCY: u32 = 16;
/// How long shutdown waits for in-flight attempts before handing them back.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Concurrency per named queue, applied at start.
    pub queues: BTreeMap<String, u32>,
    /// Concurrency of queues not named in `queues`.
    pub default_concurrency: u32,
    /// Rate limit per named queue (at most `limit` starts per `per_ms`), applied at start
    /// over the stored ones. Default: none.
    pub queue_rates: BTreeMap<String, weft_store::QueueRate>,
    /// Whether this process runs node attempts (the worker role).
    pub run_workers: bool,
    /// Connection timeout of the `http` node's client.
    pub http_connect_timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub http_pool_idle_per_host: usize,
    /// The `email` node's default SMTP server and pooling (default: no server, so each
    /// email node must name one).
    pub email: crate::nodes::EmailConfig,
    /// Live events kept for resumption. Default [`DEFAULT_EVENT_BUFFER`] (100,000).
    pub event_buffer: usize,
    /// Live events a subscriber may leave unread before it is dropped as a slow consumer.
    /// Default [`DEFAULT_SUBSCRIBER_LAG`] (32,768).
    pub event_subscriber_lag: usize,
    /// How many attempt-result batches may be on their way to the store at once (see
    /// [`DEFAULT_COMPLETION_LANES`]); a run's results always share one lane.
    pub completion_lanes: usize,
    /// Set when this process shares its database with other weft processes: workers then
    /// claim tasks from the store under leases instead of keeping them in memory, and
    /// singleton duties run on one elected leader. `None` (the default) is one process
    /// owning its store, as `weft up` on SQLite.
    pub cluster: Option<ClusterConfig>,
    /// Removes finished runs older than this, as a periodic duty (the leader's, in a
    /// cluster). `None` (the default) keeps history for ever.
    pub retention: Option<Retention>,
    /// Time between two sweeper passes (the leader's, in a cluster): runs whose counters
    /// disagree with their tasks are recounted, orphaned child runs cancelled, and subflow
    /// tasks whose child run is gone resumed. See [`DEFAULT_SWEEP_EVERY`].
    pub sweep_every: Duration,
}

/// How long finished runs are kept, and how often older ones are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Finished runs created longer ago than this are removed (PostgreSQL removes whole
    /// days, so up to a day more is kept there).
    pub keep: Duration,
    /// Time between two retention passes, cluster-wide.
    pub every: Duration,
}

impl Retention {
    /// Keeps `days` days of history, pruned once an hour.
    pub fn days(days: u32) -> Self {
        Self {
            keep: Duration::from_secs(u64::from(days) * 86_400),
            every: DEFAULT_RETENTION_EVERY,
        }
    }
}

/// Time between two sweeper passes, by default.
pub const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Time between two retention passes, by default.
pub const DEFAULT_RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Result batches in flight to the store at once, by default. The embedded store merges
/// concurrent batches into one commit anyway; PostgreSQL works on one while another
/// commits.
pub const DEFAULT_COMPLETION_LANES: usize = 2;

/// Longest a claimed task stays with a worker that stopped heartbeating, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// How long a leader's lease lasts without renewal, by default: a dead leader is replaced
/// within this plus one [`ClusterConfig::leader_retry`].
pub const DEFAULT_LEADER_TTL: Duration = Duration::from_secs(5);

/// How this process takes part in a cluster that shares one database.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This process's name in leases and the workers list (unique per process).
    pub node_id: String,
    /// Whether this process serves the API (the gateway role). The engine only reports it
    /// in the cluster's membership; default false.
    pub gateway: bool,
    /// Whether this process may be elected to run singleton duties (timer firing, lease
    /// reaping): the orchestrator role.
    pub orchestrator: bool,
    /// The queues this process's workers claim from; empty means every queue known from
    /// the configuration, the stored queue settings and the applied flows.
    pub worker_queues: Vec<String>,
    /// How long a claim lasts; heartbeats renew it every third of it. Membership beats
    /// come as often, and a member is listed while its last beat is younger than three leases.
    pub lease: Duration,
    /// How long the leader's lease lasts.
    pub leader_ttl: Duration,
    /// How often a follower tries to become leader, and the leader renews.
    pub leader_retry: Duration,
    /// Longest a worker with free slots waits before asking the store for work again
    /// (writes made by this process wake it at once).
    pub poll: Duration,
}

impl ClusterConfig {
    /// Defaults for a process named `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            gateway: false,
            orchestrator: true,
            worker_queues: Vec::new(),
            lease: DEFAULT_LEASE,
            leader_ttl: DEFAULT_LEADER_TTL,
            leader_retry: Duration::from_secs(1),
            poll: Duration::from_millis(100),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            queues: BTreeMap::new(),
            default_concurrency: DEFAULT_CONCURRENCY,
            queue_rates: BTreeMap::new(),
            run_workers: true,
            http_connect_timeout: Duration::from_secs(10),
            http_pool_idle_per_host: 32,
            email: Default::default(),
            event_buffer: DEFAULT_EVENT_BUFFER,
            event_subscriber_lag: DEFAULT_SUBSCRIBER_LAG,
            completion_lanes: DEFAULT_COMPLETION_LANES,
            cluster: None,
            retention: None,
            sweep_every: DEFAULT_SWEEP_EVERY,
        }
    }
}
