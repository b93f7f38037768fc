//! Handlers for the built-in node types. Each takes the node's rendered parameters and
//! returns an [`Outcome`]; timeouts, cancellation and panics are handled by the caller.

mod adaptive;
pub mod breaker;
mod email;
pub(crate) mod guard;
mod http;

pub use email::{
    DEFAULT_SMTP_COMMAND_TIMEOUT, DEFAULT_SMTP_POOL_SIZE, EmailClient, EmailConfig, email_target,
};
pub use http::HttpClient;

use serde_json::{Value, json};
use weft_core::nodes::*;
use weft_core::template;
use weft_store::Outcome;

/// What a handler sees of its task.
pub struct NodeInput<'a> {
    /// Run id.
    pub run_id: &'a str,
    /// Node name.
    pub node: &'a str,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Parameters with templates rendered (branch `condition` is left raw).
    pub params: Value,
    /// The template context, for handlers that evaluate more than their params.
    pub context: &'a Value,
}

fn parse<T: serde::de::DeserializeOwned + Default>(params: &Value) -> Result<T, Outcome> {
    if params.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(params.clone()).map_err(|e| Outcome::Failed {
        error: format!("invalid params: {e}"),
        retryable: false,
    })
}

fn parse_req<T: serde::de::DeserializeOwned>(params: &Value) -> Result<T, Outcome> {
    serde_json::from_value(params.clone()).map_err(|e| Outcome::Failed {
        error: format!("invalid params: {e}"),
        retryable: false,
    })
}

/// The `host:port` a node of `kind` with rendered `params` calls, for nodes that call a
/// target (`http`, `email`): the key of its circuit breaker and latency window. `None` when
/// the params do not parse (the attempt then fails on them).
pub fn target(kind: NodeKind, params: &Value, email: &EmailClient) -> Option<String> {
    match kind {
        NodeKind::Http => http::target(&parse_req::<HttpParams>(params).ok()?.url),
        NodeKind::Email => Some(email_target(
            &email::parse_params(params).ok()?,
            email.config(),
        )),
        _ => None,
    }
}

/// Runs one attempt of a node of `kind`.
pub async fn run(
    kind: NodeKind,
    input: NodeInput<'_>,
    http: &HttpClient,
    email: &EmailClient,
) -> Outcome {
    match exec(kind, input, http, email).await {
        Ok(o) | Err(o) => o,
    }
}

async fn exec(
    kind: NodeKind,
    input: NodeInput<'_>,
    http: &HttpClient,
    email: &EmailClient,
) -> Result<Outcome, Outcome> {
    Ok(match kind {
        NodeKind::Noop | NodeKind::Delay => Outcome::Succeeded(Value::Null),
        NodeKind::Log => {
            let p: LogParams = parse_req(&input.params)?;
            match p.level {
                LogLevel::Debug => {
                    tracing::debug!(run = input.run_id, node = input.node, "{}", p.message)
                }
                LogLevel::Info => {
                    tracing::info!(run = input.run_id, node = input.node, "{}", p.message)
                }
                LogLevel::Warn => {
                    tracing::warn!(run = input.run_id, node = input.node, "{}", p.message)
                }
                LogLevel::Error => {
                    tracing::error!(run = input.run_id, node = input.node, "{}", p.message)
                }
            }
            Outcome::Succeeded(json!({ "message": p.message }))
        }
        NodeKind::Transform => {
            let p: TransformParams = parse_req(&input.params)?;
            Outcome::Succeeded(p.value)
        }
        NodeKind::Branch => {
            let p: BranchParams = parse_req(&input.params)?;
            let taken = template::eval_condition(&p.condition, input.context).map_err(|e| {
                Outcome::Failed {
                    error: format!("condition: {e}"),
                    retryable: false,
                }
            })?;
            Outcome::Succeeded(json!({ "taken": if taken { "then" } else { "else" } }))
        }
        NodeKind::Fail => {
            let p: FailParams = parse(&input.params)?;
            let message = p.message.unwrap_or_else(|| "failed on purpose".into());
            match p.times {
                Some(n) if input.attempt > n => Outcome::Succeeded(json!({ "failed_attempts": n })),
                _ => Outcome::Failed {
                    error: message,
                    retryable: true,
                },
            }
        }
        NodeKind::Http => {
            let p: HttpParams = parse_req(&input.params)?;
            http.call(&p).await
        }
        NodeKind::Email => {
            let p = email::parse_params(&input.params)?;
            email.send(&p, input.run_id, input.node).await
        }
        NodeKind::Subflow => {
            unreachable!("subflow nodes are started by the worker, not run as handlers")
        }
    })
}
