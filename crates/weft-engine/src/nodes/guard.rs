//! Runs one call to a target under its node's circuit breaker and adaptive timeout: the
//! worker's single entry point for both (see [`super::breaker`] and [`super::adaptive`]).

use super::breaker::{Breakers, Gate, Verdict};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use weft_core::CompiledNode;
use weft_core::time::{Clock, Millis};
use weft_store::Outcome;

/// Makes `call` to `target` unless the node's breaker is open, bounded by the node's
/// adaptive timeout, and feeds the result back to the breaker and the latency window.
///
/// While the breaker is open the call is not made: the task is deferred until the breaker
/// lets a probe through, or, for a `fail_fast` node, the attempt fails (retryable).
pub async fn call(
    breakers: &Arc<Breakers>,
    clock: &dyn Clock,
    node: &CompiledNode,
    target: &str,
    call: impl Future<Output = Outcome>,
) -> Outcome {
    let permit = match breakers.admit(target, node.breaker.as_ref(), clock.now_ms()) {
        Gate::Go(permit) => permit,
        Gate::Open { until } => return refused(node, target, until),
    };
    let began = Instant::now();
    let outcome = match &node.adaptive_timeout {
        None => call.await,
        Some(policy) => {
            let chosen = breakers.timeout(target, policy, clock.now_ms());
            tokio::time::timeout(chosen.timeout, call)
                .await
                .unwrap_or_else(|_| Outcome::Failed {
                    error: format!(
                        "timed out after {} ({})",
                        weft_core::duration::format(chosen.timeout),
                        chosen.why
                    ),
                    retryable: true,
                })
        }
    };
    permit.finish(verdict(&outcome), began.elapsed(), clock.now_ms());
    outcome
}

/// What an outcome says about the target: a retryable failure (connection error, timeout,
/// 5xx, 429, a transient SMTP reply) means it is unhealthy; a failure another attempt cannot
/// fix (a 4xx, bad parameters) was caused by the request, and the target answered.
fn verdict(outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Failed {
            retryable: true, ..
        } => Verdict::Unhealthy,
        Outcome::Succeeded(_) => Verdict::Healthy,
        _ => Verdict::Neutral,
    }
}

/// The outcome of an attempt the open breaker did not let through.
fn refused(node: &CompiledNode, target: &str, until: Millis) -> Outcome {
    let reason = format!("circuit open for host {target}");
    if node.breaker.as_ref().is_some_and(|b| b.fail_fast) {
        Outcome::Failed {
            error: format!(
                "{reason} until {} (fail_fast)",
                weft_core::time::rfc3339(until)
            ),
            retryable: true,
        }
    } else {
        Outcome::Deferred { until, reason }
    }
}
