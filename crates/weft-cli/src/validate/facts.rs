//! What `weft validate` reads from the one address it is given: `/health`, `/ready`,
//! `/v1/cluster` (members, leader, store limits, clocks) and `/v1/flows` (the queues flows
//! use). Every read has a deadline, so a target that hangs ends the command instead.
//!
//! Fields are optional where an older server may not send them, so validating an older
//! deployment says what it cannot check rather than failing to parse.

use crate::client::Client;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use weft_core::FlowSpec;

/// Everything read from the target.
#[derive(Debug)]
pub struct Facts {
    /// Why `/health` did not answer 200, if it did not (the target is then unreachable or
    /// broken and nothing else was read).
    pub unreachable: Option<String>,
    /// Reasons `/ready` gave for not being ready (empty when it answered 200).
    pub not_ready: Vec<String>,
    /// `/v1/cluster`, or why it could not be read.
    pub cluster: Result<Cluster, String>,
    /// The answering node's clock against this machine's, read with `/v1/cluster`.
    pub clock: Option<ClockProbe>,
    /// Each applied flow's queues, or why they could not be read.
    pub flows: Result<Vec<FlowQueues>, String>,
}

/// `/v1/cluster`, as far as the checks need it.
#[derive(Debug, Clone, Deserialize)]
pub struct Cluster {
    /// The answering node.
    pub node_id: String,
    /// `single` (`weft up`: one process) or `cluster` (`weft serve`); absent before weft
    /// reported it.
    #[serde(default)]
    pub mode: Option<String>,
    /// The leader, when one holds the lease.
    #[serde(default)]
    pub leader: Option<Leader>,
    /// The answering node's clock (ms since the epoch).
    #[serde(default)]
    pub now_ms: Option<i64>,
    /// The claim lease; members beat every third of it (null outside a cluster).
    #[serde(default)]
    pub lease_ms: Option<u64>,
    /// The store's kind and limits.
    #[serde(default)]
    pub store: Option<StoreInfo>,
    /// Every member.
    #[serde(default)]
    pub members: Option<Vec<Member>>,
}

impl Cluster {
    /// True for `weft serve` processes sharing a database.
    pub fn is_cluster(&self) -> bool {
        self.mode.as_deref() == Some("cluster")
    }
}

/// The leader lease's holder.
#[derive(Debug, Clone, Deserialize)]
pub struct Leader {
    /// Its node id.
    pub node_id: String,
}

/// The store as `/v1/cluster` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct StoreInfo {
    /// `sqlite` or `postgres`.
    pub kind: String,
    /// `max_connections` (PostgreSQL).
    pub max_connections: Option<u32>,
    /// Connections reserved for superusers and reserved roles.
    pub reserved_connections: Option<u32>,
}

/// One member of the cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    /// Node id.
    pub id: String,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// Process id.
    #[serde(default)]
    pub pid: u32,
    /// Queues served.
    #[serde(default)]
    pub queues: Vec<MemberQueue>,
    /// Age of its last beat.
    #[serde(default)]
    pub heartbeat_age_ms: u64,
    /// True when it serves every queue, listed or not.
    #[serde(default)]
    pub all_queues: bool,
    /// Its store's connections.
    #[serde(default)]
    pub pool_size: u32,
    /// False while draining.
    #[serde(default = "yes")]
    pub ready: bool,
    /// Its clock minus the database's.
    #[serde(default)]
    pub clock_skew_ms: Option<i64>,
}

fn yes() -> bool {
    true
}

impl Member {
    /// True when it has the worker role.
    pub fn is_worker(&self) -> bool {
        self.roles.iter().any(|r| r == "worker")
    }

    /// True when its last beat is older than `lease_ms`: it missed three beats, so it is
    /// dead, stopped or cut off from the database (its claims are about to run out).
    pub fn is_silent(&self, lease_ms: Option<u64>) -> bool {
        lease_ms.is_some_and(|lease| self.heartbeat_age_ms > lease)
    }

    /// True when it is a worker taking tasks of `queue`.
    pub fn serves(&self, queue: &str) -> bool {
        self.is_worker() && (self.all_queues || self.queues.iter().any(|q| q.name == queue))
    }
}

/// One queue a member serves.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberQueue {
    /// Queue name.
    pub name: String,
}

/// The answering node's clock read against this machine's, bounded by the round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockProbe {
    /// The node's time minus the midpoint of the request on this machine, in ms.
    pub offset_ms: i64,
    /// Half the round trip: the offset is right to within this many ms.
    pub uncertainty_ms: i64,
}

impl ClockProbe {
    /// The offset from a request sent at `sent_ms` and answered at `received_ms` (this
    /// machine's clock) carrying the server's `server_ms`: the server read its clock at
    /// some instant in between, so it is compared with the midpoint.
    pub fn new(sent_ms: i64, received_ms: i64, server_ms: i64) -> Self {
        let rtt = (received_ms - sent_ms).max(0);
        Self {
            offset_ms: server_ms - (sent_ms + rtt / 2),
            uncertainty_ms: (rtt + 1) / 2,
        }
    }

    /// The least the clocks can disagree by, given the round trip.
    pub fn least_disagreement_ms(&self) -> i64 {
        (self.offset_ms.abs() - self.uncertainty_ms).max(0)
    }
}

/// An applied flow and the queues its nodes use.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowQueues {
    /// Flow name.
    pub flow: String,
    /// Queues, each once, sorted.
    pub queues: Vec<String>,
}

/// The queues `spec`'s nodes go to (a node's own, else the flow default, else `default`).
pub fn flow_queues(spec: &FlowSpec) -> FlowQueues {
    let default = spec
        .defaults
        .queue
        .clone()
        .unwrap_or_else(|| weft_core::flow::DEFAULT_QUEUE.to_string());
    let queues: BTreeSet<String> = spec
        .nodes
        .values()
        .map(|n| n.queue.clone().unwrap_or_else(|| default.clone()))
        .collect();
    FlowQueues {
        flow: spec.name.clone(),
        queues: queues.into_iter().collect(),
    }
}

/// This machine's clock, ms since the epoch.
pub fn local_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads everything the checks need. Stops after `/health` when it does not answer 200.
pub async fn gather(client: &Client) -> Facts {
    let not_read = "not read: the target did not answer /health";
    let mut facts = Facts {
        unreachable: None,
        not_ready: Vec::new(),
        cluster: Err(not_read.to_string()),
        clock: None,
        flows: Err(not_read.to_string()),
    };
    if let Err(e) = client.send(client.request(Method::GET, &["health"])).await {
        facts.unreachable = Some(format!("{e:#}"));
        return facts;
    }
    facts.not_ready = ready_reasons(client).await;
    let sent = local_ms();
    let began = Instant::now();
    let cluster = client
        .send(client.request(Method::GET, &["v1", "cluster"]))
        .await;
    let received = sent + began.elapsed().as_millis() as i64;
    facts.cluster = cluster
        .map_err(|e| format!("{e:#}"))
        .and_then(|v| serde_json::from_value(v).map_err(|e| format!("unexpected answer: {e}")));
    if let Ok(Cluster {
        now_ms: Some(now), ..
    }) = &facts.cluster
    {
        facts.clock = Some(ClockProbe::new(sent, received, *now));
    }
    facts.flows = client
        .send(client.request(Method::GET, &["v1", "flows"]))
        .await
        .map_err(|e| format!("{e:#}"))
        .and_then(|v| parse_flows(&v));
    facts
}

/// `/ready`'s reasons for not being ready; empty when it answered 200.
async fn ready_reasons(client: &Client) -> Vec<String> {
    let resp = match client.request(Method::GET, &["ready"]).send().await {
        Ok(r) => r,
        Err(e) => return vec![format!("/ready did not answer: {e}")],
    };
    if resp.status().is_success() {
        return Vec::new();
    }
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    match body["reasons"].as_array() {
        Some(reasons) if !reasons.is_empty() => reasons
            .iter()
            .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_string))
            .collect(),
        _ => vec![format!("/ready answered {status}")],
    }
}

/// The queues of every flow in a `/v1/flows` answer.
fn parse_flows(v: &Value) -> Result<Vec<FlowQueues>, String> {
    let flows = v["flows"]
        .as_array()
        .ok_or("unexpected /v1/flows answer: no `flows` list")?;
    flows
        .iter()
        .map(|f| {
            let spec: FlowSpec = serde_json::from_value(f["spec"].clone())
                .map_err(|e| format!("flow {}: unexpected spec: {e}", f["name"]))?;
            Ok(flow_queues(&spec))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_offset_is_taken_against_the_midpoint_and_bounded_by_half_the_round_trip() {
        // Sent at 1000, answered at 1100 here; the server said 1050: no offset.
        let p = ClockProbe::new(1_000, 1_100, 1_050);
        assert_eq!((p.offset_ms, p.uncertainty_ms), (0, 50));
        assert_eq!(p.least_disagreement_ms(), 0);
        // The server is 2 s ahead: at least 1950 ms however the trip was split.
        let p = ClockProbe::new(1_000, 1_100, 3_050);
        assert_eq!((p.offset_ms, p.least_disagreement_ms()), (2_000, 1_950));
        // Behind by less than the uncertainty: no disagreement can be shown.
        let p = ClockProbe::new(1_000, 1_301, 1_100);
        assert_eq!(
            (p.offset_ms, p.uncertainty_ms, p.least_disagreement_ms()),
            (-50, 151, 0)
        );
    }

    #[test]
    fn a_flows_queues_come_from_its_nodes_then_its_defaults() {
        let spec: FlowSpec = serde_saphyr::from_str(
            "name: f\ndefaults: {queue: bulk}\nnodes:\n  a: {type: noop}\n  b: {type: noop, queue: email}\n  c: {type: noop, queue: bulk}\n",
        )
        .unwrap();
        assert_eq!(
            flow_queues(&spec),
            FlowQueues {
                flow: "f".into(),
                queues: vec!["bulk".into(), "email".into()]
            }
        );
        let spec: FlowSpec =
            serde_saphyr::from_str("name: g\nnodes:\n  a: {type: noop}\n").unwrap();
        assert_eq!(flow_queues(&spec).queues, vec!["default".to_string()]);
    }
}
