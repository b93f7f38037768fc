//! Creating runs with their tasks: a whole batch in a constant number of statements.

use super::W;
use crate::conv::{col, exec, rows, run_ms, to_text};
use std::collections::HashMap;
use weft_core::time::Millis;
use weft_store::*;

impl W<'_> {
    /// Creates `runs` (one entry each in the answer, in order). A run whose idempotency key
    /// (scoped to its flow) was seen before, in the database or earlier in the batch, is not
    /// created: its entry names the existing run.
    pub(crate) async fn create_runs(&mut self, runs: &[NewRun]) -> StoreResult<Vec<RunCreated>> {
        // 1. Claim idempotency keys: the first of each key in the batch tries to insert it.
        let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
        let mut claim: (Vec<&str>, Vec<&str>, Vec<&str>, Vec<i64>) = Default::default();
        for (i, r) in runs.iter().enumerate() {
            if let Some(key) = &r.idempotency_key {
                let k = (r.flow.name(), key.as_str());
                if let std::collections::hash_map::Entry::Vacant(e) = first_of.entry(k) {
                    e.insert(i);
                    claim.0.push(k.0);
                    claim.1.push(k.1);
                    claim.2.push(&r.id);
                    claim.3.push(run_ms(&r.id));
                }
            }
        }
        // (flow, key) -> id of the run that holds it, for keys held by an earlier run.
        let mut existing: HashMap<(String, String), String> = HashMap::new();
        if !claim.0.is_empty() {
            let won = rows(
                &self.tx,
                "INSERT INTO run_idempotency (flow, key, run_id, run_ms)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[])
                 ON CONFLICT DO NOTHING RETURNING flow, key",
                &[&claim.0, &claim.1, &claim.2, &claim.3],
            )
            .await?;
            if won.len() < claim.0.len() {
                let held = rows(
                    &self.tx,
                    "SELECT i.flow, i.key, i.run_id FROM run_idempotency i
                     JOIN unnest($1::text[], $2::text[], $3::text[]) AS u(flow, key, run_id)
                       ON i.flow = u.flow AND i.key = u.key AND i.run_id <> u.run_id",
                    &[&claim.0, &claim.1, &claim.2],
                )
                .await?;
                for r in &held {
                    existing.insert((col(r, 0)?, col(r, 1)?), col(r, 2)?);
                }
            }
        }

        // 2. Decide which runs are new.
        let mut out = Vec::with_capacity(runs.len());
        let mut new = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            let Some(key) = &r.idempotency_key else {
                out.push(RunCreated {
                    id: r.id.clone(),
                    created: true,
                });
                new.push(r);
                continue;
            };
            let k = (r.flow.name().to_string(), key.clone());
            if let Some(id) = existing.get(&k) {
                out.push(RunCreated {
                    id: id.clone(),
                    created: false,
                });
            } else if first_of[&(r.flow.name(), key.as_str())] == i {
                out.push(RunCreated {
                    id: r.id.clone(),
                    created: true,
                });
                new.push(r);
            } else {
                let first = &runs[first_of[&(r.flow.name(), key.as_str())]];
                out.push(RunCreated {
                    id: first.id.clone(),
                    created: false,
                });
            }
        }
        if new.is_empty() {
            return Ok(out);
        }

        // 3. Insert the new runs, then all their tasks, one statement each.
        let mut r_id = Vec::with_capacity(new.len());
        let mut r_ms = Vec::with_capacity(new.len());
        let mut r_flow = Vec::with_capacity(new.len());
        let mut r_version = Vec::with_capacity(new.len());
        let mut r_state = Vec::with_capacity(new.len());
        let mut r_input = Vec::with_capacity(new.len());
        let mut r_idem = Vec::with_capacity(new.len());
        let mut r_parent = Vec::with_capacity(new.len());
        let mut r_pnode = Vec::with_capacity(new.len());
        let mut r_active = Vec::with_capacity(new.len());
        let mut r_created = Vec::with_capacity(new.len());
        let mut t_run = Vec::new();
        let mut t_ms = Vec::new();
        let mut t_node = Vec::new();
        let mut t_idx = Vec::new();
        let mut t_state = Vec::new();
        let mut t_waiting = Vec::new();
        let mut t_queue = Vec::new();
        let mut t_priority = Vec::new();
        let mut t_due: Vec<Option<Millis>> = Vec::new();
        for r in &new {
            let flow = &r.flow;
            let ms = run_ms(&r.id);
            let state = r.initial_state();
            r_id.push(r.id.as_str());
            r_ms.push(ms);
            r_flow.push(flow.name());
            r_version.push(r.version as i32);
            r_state.push(state.as_str());
            r_input.push(to_text(&r.input)?);
            r_idem.push(r.idempotency_key.as_deref());
            r_parent.push(r.parent.as_ref().map(|p| p.0.as_str()));
            r_pnode.push(r.parent.as_ref().map(|p| p.1.as_str()));
            r_active.push(flow.roots.len() as i32);
            r_created.push(r.created_at);
            self.fx.changes.push(Change::RunCreated {
                run_id: r.id.clone(),
                flow: flow.name().to_string(),
                state,
                at: r.created_at,
            });
            for (idx, node) in flow.nodes.iter().enumerate() {
                let is_root = node.needs.is_empty();
                let (state, at) = match (is_root, is_root.then(|| r.root_due(node)).flatten()) {
                    (false, _) => ("waiting", None),
                    (true, Some(due)) => ("pending", Some(due)),
                    (true, None) => ("ready", None),
                };
                t_run.push(r.id.as_str());
                t_ms.push(ms);
                t_node.push(node.name.as_str());
                t_idx.push(idx as i32);
                t_state.push(state);
                t_waiting.push(node.needs.len() as i32);
                t_queue.push(node.queue.as_str());
                t_priority.push(node.priority);
                t_due.push(at);
                if let Some(at) = at {
                    self.fx.due_at(at);
                } else if is_root {
                    self.fx
                        .ready
                        .push(ReadyTask::of(&r.id, flow, r.version, node, 1));
                }
            }
        }
        // Runs and tasks go in one statement (a data-modifying CTE always runs to the end):
        // one round trip for the whole batch.
        exec(
            &self.tx,
            "WITH r AS (
                 INSERT INTO runs (id, id_ms, flow, version, state, input, idem, parent_run, parent_node, active, created_at)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::text[],
                                      $7::text[], $8::text[], $9::text[], $10::int4[], $11::int8[]))
             INSERT INTO tasks (run_id, run_ms, node, idx, state, waiting, ok, attempt, queue, priority, scheduled_at)
             SELECT u.run_id, u.run_ms, u.node, u.idx, u.state, u.waiting, 0, 1, u.queue, u.priority, u.scheduled_at
             FROM unnest($12::text[], $13::int8[], $14::text[], $15::int4[], $16::text[], $17::int4[],
                         $18::text[], $19::int4[], $20::int8[])
                  AS u(run_id, run_ms, node, idx, state, waiting, queue, priority, scheduled_at)",
            &[
                &r_id, &r_ms, &r_flow, &r_version, &r_state, &r_input, &r_idem, &r_parent,
                &r_pnode, &r_active, &r_created, &t_run, &t_ms, &t_node, &t_idx, &t_state,
                &t_waiting, &t_queue, &t_priority, &t_due,
            ],
        )
        .await?;
        Ok(out)
    }
}
