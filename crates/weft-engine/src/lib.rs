//! weft's engine: the orchestrator (effects of completions, durable timers) and the worker
//! runtime (per-queue dispatch, node handlers, timeouts, cancellation) over any [`weft_store::Store`].
//!
//! The engine never holds state the store does not also have: queues and in-flight maps
//! are caches rebuilt from the store at start, so a crash loses only attempts in flight.

mod cluster;
mod config;
mod engine;
mod error;
pub mod events;
mod explain;
mod health;
mod limits;
mod manage;
mod membership;
pub mod nodes;
mod queue;
mod queue_admin;
mod retention;
mod schedules;
mod sweeper;
mod timer;
mod worker;

pub use config::{
    ClusterConfig, DEFAULT_CONCURRENCY, DEFAULT_EVENT_BUFFER, DEFAULT_LEADER_TTL, DEFAULT_LEASE,
    DEFAULT_RETENTION_EVERY, DEFAULT_SHUTDOWN_GRACE, DEFAULT_SUBSCRIBER_LAG, DEFAULT_SWEEP_EVERY,
    EngineConfig, Retention,
};
pub use engine::{CatalogEntry, Engine, FlowApplied, RunStart, RunView, StartRun, TaskView};
pub use error::EngineError;
pub use events::{Event, EventFilter, EventLog, LiveEvent, Subscription};
pub use explain::{Explanation, Reason};
pub use limits::{KeyUsage, LimitWait, TaskRef};
pub use manage::{BatchItem, QueueServed, WorkerInfo};
pub use membership::{MemberInfo, hostname};
pub use queue::{QueueStats, RateView};
pub use queue_admin::{MAX_QUEUE_CONCURRENCY, QueueChange, queue_rate};
pub use schedules::{FIRE_BATCH, ScheduleView, SchedulesFired};
