//! Rendering a run's limit keys: once, when the run is created here, or from its stored
//! input for a run this process did not create (recovered, or created by another process).

use super::{Limits, has_limits};
use crate::engine::Inner;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use weft_core::limits::{RenderedKeys, render_key};
use weft_core::{CompiledFlow, CompiledNode};
use weft_store::{NewRun, ReadyTask};

impl Limits {
    /// Renders the keys of a run about to be created; an error names the key that cannot
    /// be rendered from this input.
    pub fn note_run(&self, run: &NewRun) -> Result<(), String> {
        let flow = &run.flow;
        if !flow.nodes.iter().any(has_limits) {
            return Ok(());
        }
        self.note_flow(flow);
        let ctx = context(&run.id, flow.name(), &run.input);
        let mut keys = Vec::new();
        for n in flow.nodes.iter().filter(|n| has_limits(n)) {
            let path = format!("nodes.{}", n.name);
            let rendered = render(n, &ctx)
                .map_err(|(field, e)| format!("input does not fit {path}.{field}.key: {e}"))?;
            keys.push((Arc::from(n.name.as_str()), rendered));
        }
        self.runs
            .write()
            .insert(Arc::from(run.id.as_str()), keys.into());
        Ok(())
    }

    /// Forgets a run's keys (it finished, or its create was a duplicate).
    pub fn forget_run(&self, id: &str) {
        if self.enabled.load(Ordering::Relaxed) {
            self.runs.write().remove(id);
        }
    }

    pub(super) async fn keys_of(
        &self,
        inner: &Inner,
        flow: &CompiledFlow,
        node: &CompiledNode,
        task: &ReadyTask,
    ) -> RenderedKeys {
        let cached = self.runs.read().get(&*task.run_id).cloned();
        if let Some(keys) = cached
            && let Some((_, k)) = keys.iter().find(|(n, _)| **n == *task.node)
        {
            return k.clone();
        }
        // Not created here (or before a restart): render from the stored input. A key that
        // does not render (the input changed shape since) falls back to its template text,
        // so such tasks share one limit rather than escape it.
        let input = match inner.store.task_inputs(&task.run_id, &[]).await {
            Ok((input, _)) => input,
            Err(e) => {
                tracing::warn!(run = %task.run_id, error = %e, "reading input for limit keys");
                Value::Null
            }
        };
        let ctx = context(&task.run_id, flow.name(), &input);
        render(node, &ctx).unwrap_or_else(|(field, e)| {
            tracing::warn!(run = %task.run_id, node = %task.node, "{field}.key: {e}; using the unrendered key");
            RenderedKeys {
                concurrency: node.concurrency.as_ref().map(|c| Arc::from(c.key.as_str())),
                rate: node
                    .rate_limit
                    .as_ref()
                    .and_then(|r| r.key.as_deref().map(Arc::from)),
            }
        })
    }
}

fn context(run_id: &str, flow: &str, input: &Value) -> Value {
    json!({ "input": input, "run": { "id": run_id, "flow": flow } })
}

fn render(n: &CompiledNode, ctx: &Value) -> Result<RenderedKeys, (&'static str, String)> {
    let concurrency = match &n.concurrency {
        Some(c) => Some(render_key(&c.key, ctx).map_err(|e| ("concurrency", e))?),
        None => None,
    };
    let rate = match n.rate_limit.as_ref().and_then(|r| r.key.as_ref()) {
        Some(k) => Some(render_key(k, ctx).map_err(|e| ("rate_limit", e))?),
        None => None,
    };
    Ok(RenderedKeys { concurrency, rate })
}
