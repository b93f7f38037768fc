//! `weft run explain`: why a run is not progressing, in plain words.
//!
//! Each unfinished node of the run that is not simply waiting for upstream nodes gets one
//! reason: a durable timer (the run's delayed start, a `delay` node, a retry back-off, a
//! deferral such as an open circuit), the queue (paused, no worker serving it, no free
//! slot), a limit (a concurrency key saturated by other runs, a rate limit), the attempt
//! running now, or a child run. Everything is read from the store and this process, so
//! any gateway of a cluster can answer (limits are those this process enforces).

use crate::engine::Engine;
use crate::error::EngineError;
use crate::limits::LimitWait;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use weft_core::time::{Millis, rfc3339};
use weft_core::{RunState, TaskState};
use weft_store::{RunDetail, TaskRecord};

/// Why a run is where it is.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The run.
    pub run_id: String,
    /// Its flow.
    pub flow: String,
    /// Its state.
    pub state: RunState,
    /// False when the run cannot move on by itself right now: it waits on a timer, an
    /// operator (a paused queue, a missing worker) or a limit. True while an attempt runs
    /// or a task is ready with a free slot.
    pub progressing: bool,
    /// One sentence over the whole run.
    pub summary: String,
    /// One entry per node that holds the run up, in flow order.
    pub reasons: Vec<Reason>,
}

/// Why one node holds its run up.
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    /// The node.
    pub node: String,
    /// Its task state.
    pub task_state: TaskState,
    /// A stable code: `scheduled_start`, `delay`, `backoff`, `deferred`, `queue_paused`,
    /// `no_worker`, `concurrency_key`, `rate_limit`, `waiting_for_slot`, `claimed` (by
    /// another worker of the cluster), `running`, `child_run`, `dead`.
    pub code: &'static str,
    /// The reason in plain words.
    pub message: String,
    /// Until when, for a reason that ends by itself (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Millis>,
}

impl Reason {
    fn new(task: &TaskRecord, code: &'static str, message: String, until: Option<Millis>) -> Self {
        Self {
            node: task.node.clone(),
            task_state: task.state,
            code,
            message,
            until,
        }
    }
}

/// What explain knows of the queues and workers when it looks at a run.
struct Surroundings {
    paused: HashSet<String>,
    served: Option<HashSet<String>>,
    /// The run's `delay` nodes.
    delays: HashSet<String>,
    /// The limits its ready tasks wait on in this process, by node.
    waits: HashMap<String, LimitWait>,
}

impl Engine {
    /// Why run `id` is not progressing (or that it is, or how it ended).
    pub async fn run_explain(&self, id: &str) -> Result<Explanation, EngineError> {
        let detail = self
            .inner
            .store
            .run_get(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("run {id}")))?;
        let live = matches!(detail.run.state, RunState::Queued | RunState::Running);
        let mut around = if live {
            self.surroundings().await?
        } else {
            Surroundings {
                paused: HashSet::new(),
                served: None,
                delays: HashSet::new(),
                waits: HashMap::new(),
            }
        };
        for t in detail.tasks.iter().filter(|t| t.state == TaskState::Ready) {
            if let Some(wait) = self.limit_wait(&detail.run.id, &t.node).await {
                around.waits.insert(t.node.clone(), wait);
            }
        }
        if let Ok(flow) = self.inner.flow(&detail.run.flow, detail.run.version).await {
            around.delays = flow
                .nodes
                .iter()
                .filter(|n| n.kind == weft_core::nodes::NodeKind::Delay)
                .map(|n| n.name.clone())
                .collect();
        }
        let now = self.inner.now();
        let reasons: Vec<Reason> = detail
            .tasks
            .iter()
            .filter_map(|t| self.reason(&detail, t, &around, now))
            .collect();
        let progressing = live
            && reasons
                .iter()
                .any(|r| matches!(r.code, "running" | "waiting_for_slot" | "claimed"));
        let summary = summary(&detail, &reasons, progressing);
        Ok(Explanation {
            run_id: detail.run.id,
            flow: detail.run.flow,
            state: detail.run.state,
            progressing,
            summary,
            reasons,
        })
    }

    async fn surroundings(&self) -> Result<Surroundings, EngineError> {
        let paused = self
            .inner
            .store
            .queue_list()
            .await?
            .into_iter()
            .filter(|q| q.paused)
            .map(|q| q.name)
            .collect();
        // Alone on its store a process with workers serves every queue; in a cluster the
        // live members say which queues have a worker.
        let served = match &self.inner.config.cluster {
            None if self.inner.config.run_workers => None,
            _ => Some(
                self.workers()
                    .await?
                    .into_iter()
                    .flat_map(|w| w.queues.into_iter().map(|q| q.name))
                    .collect(),
            ),
        };
        Ok(Surroundings {
            paused,
            served,
            delays: HashSet::new(),
            waits: HashMap::new(),
        })
    }

    fn reason(
        &self,
        detail: &RunDetail,
        t: &TaskRecord,
        around: &Surroundings,
        now: Millis,
    ) -> Option<Reason> {
        let at = rfc3339;
        Some(match t.state {
            TaskState::Waiting | TaskState::Succeeded | TaskState::Skipped => return None,
            TaskState::Cancelled => return None,
            TaskState::Dead => Reason::new(
                t,
                "dead",
                format!(
                    "dead-lettered after {} attempt(s): {}",
                    t.attempts.len().max(1),
                    t.error.as_deref().unwrap_or("no error recorded")
                ),
                None,
            ),
            TaskState::Pending => {
                // A root held for its schedule's tick has no timer; its deferral names the tick.
                let due = t
                    .scheduled_at
                    .or(t.deferred.as_ref().map(|d| d.until))
                    .unwrap_or(now);
                if let Some(d) = t.deferred.as_ref().filter(|d| d.until == due) {
                    Reason::new(
                        t,
                        "deferred",
                        format!("{} until {} (no attempt used)", d.reason, at(d.until)),
                        Some(d.until),
                    )
                } else if let Some(error) = &t.error {
                    Reason::new(
                        t,
                        "backoff",
                        format!(
                            "in back-off until {} after attempt {} failed: {error}",
                            at(due),
                            t.attempt.saturating_sub(1).max(1)
                        ),
                        Some(due),
                    )
                } else if detail.run.state == RunState::Queued
                    && t.attempts.is_empty()
                    && !around.delays.contains(&t.node)
                {
                    Reason::new(
                        t,
                        "scheduled_start",
                        format!("waiting for the run's scheduled start at {}", at(due)),
                        Some(due),
                    )
                } else {
                    Reason::new(
                        t,
                        "delay",
                        format!("waiting for a delay until {}", at(due)),
                        Some(due),
                    )
                }
            }
            TaskState::Ready | TaskState::Running => {
                let key = (detail.run.id.as_str().into(), t.node.as_str().into());
                let started = self.inner.inflight.lock().get(&key).map(|(s, _)| *s);
                if let Some(started) = started {
                    return Some(Reason::new(
                        t,
                        "running",
                        format!("attempt {} running since {}", t.attempt, at(started)),
                        None,
                    ));
                }
                if t.state == TaskState::Running {
                    return Some(Reason::new(
                        t,
                        "running",
                        format!("attempt {} running on a worker", t.attempt),
                        None,
                    ));
                }
                self.ready_reason(t, around)
            }
            TaskState::Suspended => {
                let child = t.child_run.as_deref().unwrap_or("(not recorded)");
                Reason::new(
                    t,
                    "child_run",
                    format!("waiting for child run {child} to finish"),
                    None,
                )
            }
        })
    }

    /// Why a ready task has not started.
    fn ready_reason(&self, t: &TaskRecord, around: &Surroundings) -> Reason {
        let q = &t.queue;
        if around.paused.contains(q) {
            return Reason::new(
                t,
                "queue_paused",
                format!("queue {q} is paused; `weft queue set {q} --resume` starts it again"),
                None,
            );
        }
        if around.served.as_ref().is_some_and(|s| !s.contains(q)) {
            return Reason::new(
                t,
                "no_worker",
                format!(
                    "no worker serves queue {q}; start one with `--queues {q}` or without a queue list"
                ),
                None,
            );
        }
        match around.waits.get(&t.node).cloned() {
            Some(LimitWait::Concurrency {
                key,
                limit,
                holders,
            }) => {
                let mut runs: Vec<&str> = holders.iter().map(|h| h.run_id.as_str()).collect();
                runs.dedup();
                Reason::new(
                    t,
                    "concurrency_key",
                    format!(
                        "concurrency key {key} is saturated ({} of {limit}) by run(s) {}",
                        holders.len(),
                        runs.join(", ")
                    ),
                    None,
                )
            }
            Some(LimitWait::RateLimit {
                bucket,
                until,
                ahead,
            }) => Reason::new(
                t,
                "rate_limit",
                format!(
                    "rate limit {bucket} admits no start until {} ({ahead} task(s) ahead)",
                    rfc3339(until)
                ),
                Some(until),
            ),
            None => match &t.claimed_by {
                // Claimed by another process of the cluster: whether its attempt runs there
                // or waits for that worker's slots and limits is known only there, so the
                // worker is named rather than a cause guessed at.
                Some(worker) if worker != self.node_id() => Reason::new(
                    t,
                    "claimed",
                    format!(
                        "claimed by worker {worker}, which is running it or starts it when it has a free slot in queue {q} and its limits allow"
                    ),
                    None,
                ),
                _ => Reason::new(
                    t,
                    "waiting_for_slot",
                    format!("ready in queue {q}, waiting for a free worker slot"),
                    None,
                ),
            },
        }
    }
}

fn summary(detail: &RunDetail, reasons: &[Reason], progressing: bool) -> String {
    let run = &detail.run;
    match run.state {
        RunState::Succeeded => format!(
            "succeeded at {}",
            run.finished_at.map(rfc3339).unwrap_or_default()
        ),
        RunState::Cancelled => format!(
            "cancelled at {}",
            run.finished_at.map(rfc3339).unwrap_or_default()
        ),
        RunState::Failed => match reasons.iter().find(|r| r.code == "dead") {
            Some(r) => format!("failed: node {} {}", r.node, r.message),
            None => format!(
                "failed: {}",
                run.error.as_deref().unwrap_or("no error recorded")
            ),
        },
        RunState::Queued | RunState::Running if progressing => {
            let running: Vec<&str> = reasons
                .iter()
                .filter(|r| r.code == "running")
                .map(|r| r.node.as_str())
                .collect();
            let claimed: Vec<&str> = reasons
                .iter()
                .filter(|r| r.code == "claimed")
                .map(|r| r.node.as_str())
                .collect();
            if !running.is_empty() {
                format!("progressing: running {}", running.join(", "))
            } else if !claimed.is_empty() {
                format!("progressing: {} claimed by a worker", claimed.join(", "))
            } else {
                "progressing: tasks are ready and slots are free".into()
            }
        }
        RunState::Queued | RunState::Running => match reasons.first() {
            Some(r) => format!("waiting: node {}: {}", r.node, r.message),
            None => "waiting, with no node able to move: the sweeper will repair it".into(),
        },
    }
}
