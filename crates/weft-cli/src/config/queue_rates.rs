//! `[queue_rates]`: a rate limit per queue in the config file, in the shape of a node's
//! `rate_limit` (`invoicing = {limit = 10, per = "1s"}`); checked at start, naming the field.

use std::collections::BTreeMap;
use weft_core::limits::{RateLimitSpec, compile_rate};
use weft_store::QueueRate;

/// A queue's rate limit as written in the config file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueRateConfig {
    /// Starts per interval (at least 1).
    pub limit: i64,
    /// The interval, e.g. `1s` (at least 1ms).
    pub per: String,
}

/// Reads `10/1s` (the environment's and the CLI's form).
pub fn parse(text: &str) -> Result<QueueRateConfig, String> {
    let help = "expected LIMIT/PER, a whole number of starts per interval, e.g. 10/1s or 100/1m";
    let (limit, per) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: {help}"))?;
    let limit = limit
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: LIMIT {limit:?} is not a whole number; {help}"))?;
    Ok(QueueRateConfig {
        limit,
        per: per.trim().to_string(),
    })
}

/// Checks `rate` of queue `name`; the problems name the field, e.g.
/// `queue_rates.invoicing.limit: must be at least 1, got 0`.
pub fn check(name: &str, rate: &QueueRateConfig) -> Result<QueueRate, Vec<String>> {
    let path = format!("queue_rates.{name}");
    let spec = RateLimitSpec {
        limit: rate.limit,
        per: rate.per.clone(),
        key: None,
    };
    let mut issues = Vec::new();
    let compiled = compile_rate(&path, &spec, &mut issues);
    let mut problems: Vec<String> = issues.iter().map(ToString::to_string).collect();
    match compiled.map(|r| (r.limit, r.per.as_millis())) {
        Some((limit, per_ms)) if per_ms >= 1 && problems.is_empty() => Ok(QueueRate {
            limit,
            per_ms: u64::try_from(per_ms).unwrap_or(u64::MAX),
        }),
        Some(_) if problems.is_empty() => {
            problems.push(format!(
                "{path}.per: must be at least 1ms, got {:?}",
                rate.per
            ));
            Err(problems)
        }
        _ => Err(problems),
    }
}

/// The valid rates, for the engine (invalid ones were refused at start).
pub fn engine(rates: &BTreeMap<String, QueueRateConfig>) -> BTreeMap<String, QueueRate> {
    rates
        .iter()
        .filter_map(|(name, r)| check(name, r).ok().map(|r| (name.clone(), r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_and_bad_ones_name_the_field() {
        let ok = check("invoicing", &parse("10/1s").unwrap()).unwrap();
        assert_eq!(
            ok,
            QueueRate {
                limit: 10,
                per_ms: 1000
            }
        );
        let zero = check("invoicing", &parse("0/1s").unwrap()).unwrap_err();
        assert_eq!(
            zero,
            ["queue_rates.invoicing.limit: must be at least 1, got 0"]
        );
        let per = check("q", &parse("5/0s").unwrap()).unwrap_err();
        assert!(
            per[0].starts_with("queue_rates.q.per: must be longer than zero"),
            "{per:?}"
        );
        let tiny = check("q", &parse("5/10us").unwrap()).unwrap_err();
        assert!(tiny[0].contains("at least 1ms"), "{tiny:?}");
        assert!(parse("ten").unwrap_err().contains("LIMIT/PER"));
    }
}
