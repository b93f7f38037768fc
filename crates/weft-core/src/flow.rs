//! A validated flow in the form the engine walks: nodes by index, with their upstream and
//! downstream edges, resolved retry policy, timeout, queue and priority.

use crate::nodes::NodeKind;
use crate::retry::RetryPolicy;
use crate::spec::FlowSpec;
use crate::state::RunState;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Index of a node inside its [`CompiledFlow`].
pub type NodeIdx = usize;

/// Queue a node uses when neither it nor its flow names one.
pub const DEFAULT_QUEUE: &str = "default";
/// Per-attempt timeout when neither the node nor its flow sets one.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(300);

/// A validated, indexed flow.
#[derive(Debug, Clone)]
pub struct CompiledFlow {
    /// The document it was compiled from.
    pub spec: FlowSpec,
    /// Nodes in document order.
    pub nodes: Vec<CompiledNode>,
    /// Nodes with no `needs`: they start when the run starts.
    pub roots: Vec<NodeIdx>,
    index: HashMap<String, NodeIdx>,
}

/// One node, resolved.
#[derive(Debug, Clone)]
pub struct CompiledNode {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: NodeKind,
    /// Upstream nodes.
    pub needs: Vec<NodeIdx>,
    /// Downstream nodes (those that list this one in `needs`).
    pub successors: Vec<NodeIdx>,
    /// Raw parameters (templates unrendered).
    pub params: Value,
    /// True if any parameter string is a template.
    pub templated: bool,
    /// Upstream nodes whose outputs the templates read.
    pub reads_nodes: Vec<String>,
    /// True if the templates read `input`.
    pub reads_input: bool,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Queue.
    pub queue: String,
    /// Priority inside the queue (higher first).
    pub priority: i32,
    /// For `delay`: how long.
    pub delay: Option<Duration>,
    /// For `branch`: which successors belong to each path.
    pub branch: Option<BranchPaths>,
    /// Per-key concurrency limit.
    pub concurrency: Option<crate::limits::KeyLimit>,
    /// Rate limit on starts.
    pub rate_limit: Option<crate::limits::RateLimit>,
    /// Circuit breaker on the node's target (`http`, `email`).
    pub breaker: Option<crate::resilience::BreakerPolicy>,
    /// Adaptive timeout on calls to the node's target (`http`, `email`).
    pub adaptive_timeout: Option<crate::resilience::AdaptiveTimeout>,
}

/// The successors of a `branch` node split by path.
#[derive(Debug, Clone, Default)]
pub struct BranchPaths {
    /// Run when the condition holds.
    pub then: Vec<NodeIdx>,
    /// Run when it does not.
    pub otherwise: Vec<NodeIdx>,
}

impl CompiledFlow {
    pub(crate) fn new(spec: FlowSpec, nodes: Vec<CompiledNode>) -> Self {
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let roots = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.needs.is_empty())
            .map(|(i, _)| i)
            .collect();
        Self {
            spec,
            nodes,
            roots,
            index,
        }
    }

    /// The flow's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Looks a node up by name.
    pub fn node_index(&self, name: &str) -> Option<NodeIdx> {
        self.index.get(name).copied()
    }

    /// Looks a node up by name.
    pub fn node(&self, name: &str) -> Option<&CompiledNode> {
        self.node_index(name).map(|i| &self.nodes[i])
    }

    /// The state a new run of this flow starts in: `queued` (waiting for a worker), or
    /// `running` when a root is a `delay`, whose timer starts at once.
    pub fn initial_run_state(&self) -> RunState {
        if self
            .roots
            .iter()
            .any(|&r| self.nodes[r].kind == NodeKind::Delay)
        {
            RunState::Running
        } else {
            RunState::Queued
        }
    }

    /// Every queue the flow's nodes use.
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self.nodes.iter().map(|n| n.queue.clone()).collect();
        q.sort();
        q.dedup();
        q
    }
}
