//! The static checks: what the deployment's own reports (`/ready`, `/v1/cluster`,
//! `/v1/flows`) say about it, each turned into a verdict with the figures behind it. They
//! are pure functions of [`Facts`], so the arithmetic (pool budgets, clock bounds) is tested
//! without a server.

use super::facts::{ClockProbe, Cluster, Facts, FlowQueues, Member, StoreInfo};
use super::score::{Check, Status};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Clocks further apart than this get a warning: leases (5 s leader, 15 s claims by
/// default) are compared across processes' clocks.
pub const CLOCK_WARN_MS: i64 = 250;
/// Clocks further apart than this fail: a lease could look expired a second early.
pub const CLOCK_FAIL_MS: i64 = 1_000;
/// Pools taking more than this share of the server's usable connections get a warning:
/// migrations, `psql` sessions and a restarting process need some left.
pub const POOL_WARN_SHARE: f64 = 0.8;

/// Every static check, in checklist order. When the target did not answer, one failed
/// check says so and the others are skipped.
pub fn all(url: &str, facts: &Facts) -> Vec<Check> {
    if let Some(why) = &facts.unreachable {
        let mut checks = vec![Check::new(
            "reachable",
            10,
            Status::Fail,
            format!("{url}/health did not answer: {why}"),
            Value::Null,
        )];
        for name in [
            "nodes_ready",
            "queues_served",
            "pool_fits",
            "leader",
            "clocks",
        ] {
            checks.push(skipped(name, "not checked: the target did not answer"));
        }
        return checks;
    }
    let reachable = Check::new(
        "reachable",
        10,
        Status::Pass,
        format!("{url}/health answered"),
        Value::Null,
    );
    let cluster = match &facts.cluster {
        Ok(c) => c,
        Err(why) => {
            let mut checks = vec![reachable, nodes_ready(&facts.not_ready, None, None)];
            for name in ["queues_served", "pool_fits", "leader", "clocks"] {
                checks.push(Check::new(
                    name,
                    10,
                    Status::Fail,
                    format!("cannot read /v1/cluster: {why}"),
                    Value::Null,
                ));
            }
            return checks;
        }
    };
    let mut ready = nodes_ready(
        &facts.not_ready,
        cluster.members.as_deref(),
        cluster.lease_ms,
    );
    if let Some(data) = ready.data.as_object_mut() {
        data.insert("answering_node".into(), json!(cluster.node_id));
    }
    vec![
        reachable,
        ready,
        queues_served(&facts.flows, cluster.members.as_deref()),
        pool_fits(cluster.store.as_ref(), cluster.members.as_deref()),
        leader(cluster),
        clocks(facts.clock, cluster.members.as_deref()),
    ]
}

/// A check that was not run, with the reason.
pub fn skipped(name: &'static str, why: &str) -> Check {
    Check::new(name, 0, Status::Skip, why.to_string(), Value::Null)
}

fn older_server(name: &'static str, what: &str) -> Check {
    Check::new(
        name,
        10,
        Status::Warn,
        format!("the server does not report {what} (a weft older than this client?)"),
        Value::Null,
    )
}

/// The answering node is ready, and every member beat recently and is not draining.
fn nodes_ready(not_ready: &[String], members: Option<&[Member]>, lease_ms: Option<u64>) -> Check {
    let data = json!({
        "answering_node_not_ready": not_ready,
        "members": members.unwrap_or_default().iter().map(|m| json!({
            "id": m.id, "roles": m.roles, "ready": m.ready, "heartbeat_age_ms": m.heartbeat_age_ms,
        })).collect::<Vec<_>>(),
    });
    if !not_ready.is_empty() {
        let why = not_ready.join("; ");
        return Check::new(
            "nodes_ready",
            20,
            Status::Fail,
            format!("the answering node is not ready: {why}"),
            data,
        );
    }
    let Some(members) = members else {
        return older_server("nodes_ready", "its members");
    };
    let silent: Vec<String> = members
        .iter()
        .filter(|m| m.is_silent(lease_ms))
        .map(|m| {
            format!(
                "{} (last beat {:.1} s ago)",
                m.id,
                m.heartbeat_age_ms as f64 / 1000.0
            )
        })
        .collect();
    if !silent.is_empty() {
        return Check::new(
            "nodes_ready",
            20,
            Status::Fail,
            format!(
                "{} of {} members stopped beating (dead, stopped or cut off from the database): {}",
                silent.len(),
                members.len(),
                silent.join(", ")
            ),
            data,
        );
    }
    let draining: Vec<&str> = members
        .iter()
        .filter(|m| !m.ready)
        .map(|m| m.id.as_str())
        .collect();
    if !draining.is_empty() {
        return Check::new(
            "nodes_ready",
            20,
            Status::Fail,
            format!(
                "{} of {} members are draining: {}",
                draining.len(),
                members.len(),
                draining.join(", ")
            ),
            data,
        );
    }
    Check::new(
        "nodes_ready",
        20,
        Status::Pass,
        match members.len() {
            1 => "the one member is healthy and ready".to_string(),
            n => format!("all {n} members are healthy and ready"),
        },
        data,
    )
}

/// The queues each applied flow uses that no worker serves, by queue (the flows using it).
pub fn unserved_queues(flows: &[FlowQueues], members: &[Member]) -> BTreeMap<String, Vec<String>> {
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in flows {
        for q in &f.queues {
            if !members.iter().any(|m| m.serves(q)) {
                missing.entry(q.clone()).or_default().push(f.flow.clone());
            }
        }
    }
    missing
}

/// Every queue an applied flow uses has a worker serving it.
fn queues_served(flows: &Result<Vec<FlowQueues>, String>, members: Option<&[Member]>) -> Check {
    let flows = match flows {
        Ok(f) => f,
        Err(why) => {
            return Check::new(
                "queues_served",
                20,
                Status::Fail,
                format!("cannot read the flows: {why}"),
                Value::Null,
            );
        }
    };
    let Some(members) = members else {
        return older_server("queues_served", "its members");
    };
    let mut served: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in members.iter().filter(|m| m.is_worker()) {
        if m.all_queues {
            served.entry("*").or_default().push(&m.id);
        }
        for q in &m.queues {
            served.entry(&q.name).or_default().push(&m.id);
        }
    }
    let missing = unserved_queues(flows, members);
    let data = json!({"served_by": served, "unserved": missing});
    if missing.is_empty() {
        let used: std::collections::BTreeSet<&str> = flows
            .iter()
            .flat_map(|f| f.queues.iter().map(String::as_str))
            .collect();
        return Check::new(
            "queues_served",
            20,
            Status::Pass,
            format!(
                "the {} queues used by {} flows each have a worker",
                used.len(),
                flows.len()
            ),
            data,
        );
    }
    let list: Vec<String> = missing
        .iter()
        .map(|(q, f)| format!("{q} (used by {})", f.join(", ")))
        .collect();
    Check::new(
        "queues_served",
        20,
        Status::Fail,
        format!(
            "no worker serves queue {}: its tasks would wait for ever",
            list.join(", queue ")
        ),
        data,
    )
}

/// Connections the server leaves to clients: its limit minus the reserved ones.
pub fn usable_connections(max: u32, reserved: u32) -> u32 {
    max.saturating_sub(reserved)
}

/// The verdict on pools adding up to `total` of `usable` connections.
pub fn pool_status(total: u32, usable: u32) -> Status {
    if total > usable {
        Status::Fail
    } else if f64::from(total) > POOL_WARN_SHARE * f64::from(usable) {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// The members' pools fit within the server's usable connections.
fn pool_fits(store: Option<&StoreInfo>, members: Option<&[Member]>) -> Check {
    let (Some(store), Some(members)) = (store, members) else {
        return older_server("pool_fits", "its store's connection limit");
    };
    let (Some(max), reserved) = (
        store.max_connections,
        store.reserved_connections.unwrap_or(0),
    ) else {
        return skipped(
            "pool_fits",
            &format!(
                "not applicable: the {} store is embedded and has no server connection limit",
                store.kind
            ),
        );
    };
    let usable = usable_connections(max, reserved);
    let total: u32 = members.iter().map(|m| m.pool_size).sum();
    let pools: BTreeMap<&str, u32> = members
        .iter()
        .map(|m| (m.id.as_str(), m.pool_size))
        .collect();
    let data = json!({
        "pools": pools, "total": total, "max_connections": max,
        "reserved_connections": reserved, "usable_connections": usable,
    });
    let status = pool_status(total, usable);
    let summary = match status {
        Status::Fail => format!(
            "the {} members' pools may open {total} connections but the server takes {usable} \
             ({max} max_connections - {reserved} reserved): lower pool_size or raise max_connections",
            members.len()
        ),
        Status::Warn => format!(
            "the {} members' pools take {total} of {usable} usable connections: over {:.0}%, little is left for migrations and restarts",
            members.len(),
            POOL_WARN_SHARE * 100.0
        ),
        _ => format!(
            "the {} members' pools take {total} of {usable} usable connections ({max} max_connections - {reserved} reserved)",
            members.len()
        ),
    };
    Check::new("pool_fits", 15, status, summary, data)
}

/// A cluster has a leader that is one of its orchestrators; a single process leads itself.
fn leader(cluster: &Cluster) -> Check {
    let Some(mode) = &cluster.mode else {
        return older_server("leader", "its mode");
    };
    if !cluster.is_cluster() {
        return Check::new(
            "leader",
            15,
            Status::Pass,
            "one process (`weft up`): it runs the singleton duties itself, no election needed"
                .into(),
            json!({"mode": mode}),
        );
    }
    let orchestrators: Vec<&str> = cluster
        .members
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|m| m.roles.iter().any(|r| r == "orchestrator"))
        .map(|m| m.id.as_str())
        .collect();
    let data = json!({"leader": cluster.leader.as_ref().map(|l| &l.node_id), "orchestrators": orchestrators});
    match &cluster.leader {
        None => Check::new(
            "leader",
            15,
            Status::Fail,
            format!(
                "no leader holds the lease ({} orchestrators listed): timers, reaping and schedules are stopped",
                orchestrators.len()
            ),
            data,
        ),
        Some(l) if !orchestrators.contains(&l.node_id.as_str()) => Check::new(
            "leader",
            15,
            Status::Warn,
            format!(
                "the leader {} is not among the listed orchestrators (it may be stopping)",
                l.node_id
            ),
            data,
        ),
        Some(l) => Check::new(
            "leader",
            15,
            Status::Pass,
            format!(
                "{} leads, of {} orchestrator(s): {}",
                l.node_id,
                orchestrators.len(),
                orchestrators.join(", ")
            ),
            data,
        ),
    }
}

/// The verdict on clocks at least `ms` apart.
pub fn clock_status(ms: i64) -> Status {
    match ms.abs() {
        d if d > CLOCK_FAIL_MS => Status::Fail,
        d if d > CLOCK_WARN_MS => Status::Warn,
        _ => Status::Pass,
    }
}

/// Every member's clock agrees with the database's, and the answering node's with this
/// machine's (to within the round trip).
fn clocks(probe: Option<ClockProbe>, members: Option<&[Member]>) -> Check {
    let Some(probe) = probe else {
        return older_server("clocks", "its clock");
    };
    let skews: BTreeMap<&str, Option<i64>> = members
        .unwrap_or_default()
        .iter()
        .map(|m| (m.id.as_str(), m.clock_skew_ms))
        .collect();
    let worst = skews
        .iter()
        .filter_map(|(id, s)| s.map(|s| (*id, s)))
        .max_by_key(|(_, s)| s.abs());
    let local = probe.least_disagreement_ms();
    let status = [
        clock_status(local),
        worst.map_or(Status::Pass, |(_, s)| clock_status(s)),
    ]
    .into_iter()
    .max_by_key(|s| match s {
        Status::Fail => 2,
        Status::Warn => 1,
        _ => 0,
    })
    .unwrap_or(Status::Pass);
    let data = json!({
        "answering_node_offset_ms": probe.offset_ms,
        "round_trip_uncertainty_ms": probe.uncertainty_ms,
        "member_skew_vs_database_ms": skews,
    });
    let members_part = match worst {
        Some((id, s)) => format!("members vs the database: worst {id} at {s:+} ms"),
        None => "members vs the database: not measured (embedded store)".to_string(),
    };
    Check::new(
        "clocks",
        10,
        status,
        format!(
            "{members_part}; the answering node vs this machine: {:+} ms ± {} ms (warn above {CLOCK_WARN_MS} ms, fail above {CLOCK_FAIL_MS} ms)",
            probe.offset_ms, probe.uncertainty_ms
        ),
        data,
    )
}

#[cfg(test)]
mod tests;
