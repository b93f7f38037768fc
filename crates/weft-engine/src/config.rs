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
    /// Whether this process runs node attempts (the worker role).
    pub run_workers: bool,
    /// Connection timeout of the `http` node's client.
    pub http_connect_timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub http_pool_idle_per_host: usize,
    /// Live events kept for resumption. Default [`DEFAULT_EVENT_BUFFER`] (100,000).
    pub event_buffer: usize,
    /// Live events a subscriber may leave unread before it is dropped as a slow consumer.
    /// Default [`DEFAULT_SUBSCRIBER_LAG`] (32,768).
    pub event_subscriber_lag: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            queues: BTreeMap::new(),
            default_concurrency: DEFAULT_CONCURRENCY,
            run_workers: true,
            http_connect_timeout: Duration::from_secs(10),
            http_pool_idle_per_host: 32,
            event_buffer: DEFAULT_EVENT_BUFFER,
            event_subscriber_lag: DEFAULT_SUBSCRIBER_LAG,
        }
    }
}
