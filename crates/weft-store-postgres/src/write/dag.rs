//! Moving a run's DAG forward after nodes finish: successor counters, activation and
//! skips (docs/decisions/0003), for a whole wave of results at once.

use super::{RunId, W, new_change};
use crate::conv::{col, exec, rows};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use weft_core::nodes::NodeKind;
use weft_core::time::Millis;
use weft_core::{CompiledFlow, NodeIdx, TaskState};
use weft_store::*;

/// A finished node whose successors must hear of it.
pub(super) struct Seed {
    pub(super) run: RunId,
    pub(super) ms: i64,
    pub(super) flow: Arc<CompiledFlow>,
    pub(super) version: u32,
    pub(super) idx: NodeIdx,
    pub(super) succeeded: bool,
    pub(super) taken: Option<bool>,
    pub(super) at: Millis,
}

/// What one wave changes on one run's counters.
pub(super) struct Delta {
    pub(super) run: RunId,
    pub(super) ms: i64,
    pub(super) active: i32,
    pub(super) dead: i32,
    pub(super) at: Millis,
}

/// Per-run counter changes, in the order runs were first touched.
#[derive(Default)]
pub(super) struct Deltas {
    pub(super) list: Vec<Delta>,
    pub(super) pos: HashMap<RunId, usize>,
}

impl Deltas {
    pub(super) fn add(&mut self, run: &RunId, ms: i64, active: i32, dead: i32, at: Millis) {
        let i = *self.pos.entry(run.clone()).or_insert_with(|| {
            self.list.push(Delta {
                run: run.clone(),
                ms,
                active: 0,
                dead: 0,
                at,
            });
            self.list.len() - 1
        });
        let d = &mut self.list[i];
        d.active += active;
        d.dead += dead;
        d.at = d.at.max(at);
    }
}

impl W<'_> {
    /// Counts finished nodes toward their successors; activates or skips those whose
    /// upstream is now complete, and carries skips on, wave by wave.
    pub(super) async fn propagate(
        &mut self,
        mut frontier: Vec<Seed>,
        deltas: &mut Deltas,
    ) -> StoreResult<()> {
        while !frontier.is_empty() {
            // (run, successor) -> edge, aggregated over the frontier, in first-seen order.
            let mut pos: HashMap<(RunId, NodeIdx), usize> = HashMap::new();
            let mut edges: Vec<(Seed, i32, i32, bool)> = Vec::new();
            for s in &frontier {
                let from = &s.flow.nodes[s.idx];
                for &succ in &from.successors {
                    let doomed = match (s.taken, &from.branch) {
                        (Some(t), Some(paths)) => {
                            let off_path = if t { &paths.otherwise } else { &paths.then };
                            off_path.contains(&succ)
                        }
                        _ => false,
                    };
                    let i = *pos.entry((s.run.clone(), succ)).or_insert_with(|| {
                        edges.push((
                            Seed {
                                run: s.run.clone(),
                                ms: s.ms,
                                flow: s.flow.clone(),
                                version: s.version,
                                idx: succ,
                                succeeded: false,
                                taken: None,
                                at: s.at,
                            },
                            0,
                            0,
                            false,
                        ));
                        edges.len() - 1
                    });
                    let e = &mut edges[i];
                    e.0.at = e.0.at.max(s.at);
                    e.1 += 1;
                    e.2 += (s.succeeded && !doomed) as i32;
                    e.3 |= doomed;
                }
            }
            if edges.is_empty() {
                break;
            }
            let run: Vec<&str> = edges.iter().map(|e| e.0.run.as_ref()).collect();
            let ms: Vec<i64> = edges.iter().map(|e| e.0.ms).collect();
            let node: Vec<&str> = edges
                .iter()
                .map(|e| e.0.flow.nodes[e.0.idx].name.as_str())
                .collect();
            let n: Vec<i32> = edges.iter().map(|e| e.1).collect();
            let okc: Vec<i32> = edges.iter().map(|e| e.2).collect();
            let doomed: Vec<bool> = edges.iter().map(|e| e.3).collect();
            let counted = rows(
                &self.tx,
                "UPDATE tasks t SET waiting = t.waiting - u.n, ok = t.ok + u.ok, doomed = t.doomed OR u.doomed
                 FROM unnest($1::text[], $2::int8[], $3::text[], $4::int4[], $5::int4[], $6::bool[])
                      AS u(run_id, ms, node, n, ok, doomed)
                 WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node AND t.state = 'waiting'
                 RETURNING u.run_id, u.node, t.waiting, t.ok, t.doomed",
                &[&run, &ms, &node, &n, &okc, &doomed],
            )
            .await?;
            let mut complete: HashMap<(String, String), bool> = HashMap::new();
            for c in &counted {
                let (waiting, ok, doomed): (i32, i32, bool) = (col(c, 2)?, col(c, 3)?, col(c, 4)?);
                if waiting <= 0 {
                    complete.insert((col(c, 0)?, col(c, 1)?), ok > 0 && !doomed);
                }
            }
            let (mut ready, mut delayed, mut skipped): (
                Vec<usize>,
                Vec<(usize, Millis)>,
                Vec<usize>,
            ) = Default::default();
            for (i, (e, ..)) in edges.iter().enumerate() {
                let node = &e.flow.nodes[e.idx];
                let Some(&runs) = complete.get(&(e.run.to_string(), node.name.clone())) else {
                    continue;
                };
                if !runs {
                    skipped.push(i);
                    continue;
                }
                deltas.add(&e.run, e.ms, 1, 0, e.at);
                if node.kind == NodeKind::Delay {
                    let at = e.at + node.delay.unwrap_or_default().as_millis() as Millis;
                    self.fx.due_at(at);
                    delayed.push((i, at));
                } else {
                    self.fx
                        .ready
                        .push(ReadyTask::of(&e.run, &e.flow, e.version, node, 1));
                    ready.push(i);
                }
            }
            let pick = |idx: &[usize]| -> (Vec<&str>, Vec<i64>, Vec<&str>) {
                (
                    idx.iter().map(|&i| run[i]).collect(),
                    idx.iter().map(|&i| ms[i]).collect(),
                    idx.iter().map(|&i| node[i]).collect(),
                )
            };
            if !ready.is_empty() {
                let (r, m, n) = pick(&ready);
                exec(
                    &self.tx,
                    "UPDATE tasks t SET state = 'ready', lease_owner = NULL, lease_until = NULL
                     FROM unnest($1::text[], $2::int8[], $3::text[]) AS u(run_id, ms, node)
                     WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node",
                    &[&r, &m, &n],
                )
                .await?;
            }
            if !delayed.is_empty() {
                let idx: Vec<usize> = delayed.iter().map(|d| d.0).collect();
                let at: Vec<Millis> = delayed.iter().map(|d| d.1).collect();
                let (r, m, n) = pick(&idx);
                exec(
                    &self.tx,
                    "UPDATE tasks t SET state = 'pending', scheduled_at = u.at
                     FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[]) AS u(run_id, ms, node, at)
                     WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node",
                    &[&r, &m, &n, &at],
                )
                .await?;
            }
            if !skipped.is_empty() {
                let at: Vec<Millis> = skipped.iter().map(|&i| edges[i].0.at).collect();
                let (r, m, n) = pick(&skipped);
                exec(
                    &self.tx,
                    "UPDATE tasks t SET state = 'skipped', finished_at = u.at
                     FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[]) AS u(run_id, ms, node, at)
                     WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node",
                    &[&r, &m, &n, &at],
                )
                .await?;
            }
            let mut skipped_seeds = Vec::new();
            let skipped: HashSet<usize> = skipped.into_iter().collect();
            for (i, (e, ..)) in edges.into_iter().enumerate() {
                if skipped.contains(&i) {
                    self.fx.changes.push(Change::Task(new_change(
                        &e.run,
                        &e.flow,
                        e.idx,
                        TaskState::Skipped,
                        1,
                        e.at,
                    )));
                    skipped_seeds.push(e);
                }
            }
            frontier = skipped_seeds;
        }
        Ok(())
    }
}
