//! weft's domain: flow specifications and their validation, the compiled DAG the engine
//! walks, run and task states, retry policy and templating. Nothing here does I/O, so every
//! rule about what a flow means can be tested without a store or a network.

pub mod duration;
pub mod error;
pub mod flow;
pub mod limits;
pub mod nodes;
pub mod resilience;
pub mod retry;
pub mod schedule;
pub mod spec;
pub mod state;
pub mod template;
pub mod time;
mod validate;

pub use error::{Issue, SpecError};
pub use flow::{CompiledFlow, CompiledNode, NodeIdx};
pub use spec::{FlowSpec, NodeSpec, parse_flow};
pub use state::{RunState, TaskState};
pub use validate::{closest, compile, is_valid_name};

/// The largest flow document weft accepts, in bytes.
pub const MAX_FLOW_BYTES: usize = 1024 * 1024;
/// The most nodes one flow may declare.
pub const MAX_NODES: usize = 10_000;
