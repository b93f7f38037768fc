//! The `WEFT_*` environment variables: each maps to one config key; any other `WEFT_`
//! variable is an error naming the closest known one.

use super::store::non_empty;
use super::{CONFIG_ENV, Config, parse_rate, split_list};
use anyhow::bail;
use std::path::PathBuf;
use weft_store_sqlite::Durability;

/// `WEFT_*` variables that are read by something other than the config tree.
/// (`WEFT_TEST_DATABASE_URL` names the test suites' PostgreSQL; CI exports it for them.)
const ENV_NOT_CONFIG: &[&str] = &[
    CONFIG_ENV,
    "WEFT_LOG",
    "WEFT_URL",
    "WEFT_API_KEY",
    "WEFT_TEST_DATABASE_URL",
];
/// Prefix of the per-queue concurrency variables, `WEFT_QUEUES__<NAME>=N`.
const ENV_QUEUE_PREFIX: &str = "WEFT_QUEUES__";
/// `WEFT_QUEUE_RATES__INVOICING=10/1s` sets `[queue_rates] invoicing`.
const ENV_QUEUE_RATE_PREFIX: &str = "WEFT_QUEUE_RATES__";
/// Every config variable other than the per-queue ones.
const ENV_KEYS: &[&str] = &[
    "WEFT_DATA_DIR",
    "WEFT_LISTEN",
    "WEFT_FLOWS_DIR",
    "WEFT_DURABILITY",
    "WEFT_MAX_BODY_BYTES",
    "WEFT_SHUTDOWN_GRACE",
    "WEFT_DEFAULT_CONCURRENCY",
    "WEFT_HTTP__CONNECT_TIMEOUT",
    "WEFT_HTTP__POOL_IDLE_PER_HOST",
    "WEFT_REQUEST_TIMEOUT",
    "WEFT_MAX_INFLIGHT_REQUESTS",
    "WEFT_TRUST_PROXY",
    "WEFT_LIMITS__PER_IP",
    "WEFT_LIMITS__PER_KEY",
    "WEFT_LIMITS__READ",
    "WEFT_LIMITS__WRITE",
    "WEFT_LIMITS__BATCH",
    "WEFT_EVENTS__BUFFER",
    "WEFT_EVENTS__SUBSCRIBER_LAG",
    "WEFT_DATABASE_URL",
    "WEFT_POSTGRES__SCHEMA",
    "WEFT_POSTGRES__POOL_SIZE",
    "WEFT_POSTGRES__CONNECT_WAIT",
    "WEFT_NODE_ID",
    "WEFT_CLUSTER__LEASE",
    "WEFT_CLUSTER__LEADER_TTL",
    "WEFT_CLUSTER__POLL",
    "WEFT_CLUSTER__WORKER_QUEUES",
    "WEFT_RETENTION__DAYS",
    "WEFT_RETENTION__EVERY",
    "WEFT_EMAIL__HOST",
    "WEFT_EMAIL__PORT",
    "WEFT_EMAIL__TLS",
    "WEFT_EMAIL__USERNAME",
    "WEFT_EMAIL__PASSWORD",
    "WEFT_EMAIL__PASSWORD_ENV",
    "WEFT_EMAIL__FROM",
    "WEFT_EMAIL__TLS_CA_FILE",
    "WEFT_EMAIL__POOL_SIZE",
    "WEFT_EMAIL__COMMAND_TIMEOUT",
];

impl Config {
    pub(super) fn apply_env(&mut self, env: &[(String, String)]) -> anyhow::Result<()> {
        let mut env: Vec<&(String, String)> =
            env.iter().filter(|(k, _)| k.starts_with("WEFT_")).collect();
        env.sort();
        for (key, value) in env {
            let parse_duration =
                || weft_core::duration::parse(value).map_err(|e| anyhow::anyhow!("{key}: {e}"));
            match key.as_str() {
                k if ENV_NOT_CONFIG.contains(&k) => {}
                "WEFT_DATA_DIR" => self.data_dir = PathBuf::from(value),
                "WEFT_LISTEN" => self.listen = value.clone(),
                "WEFT_FLOWS_DIR" => self.flows_dir = Some(PathBuf::from(value)),
                "WEFT_DURABILITY" => self.durability = parse_durability(key, value)?,
                "WEFT_MAX_BODY_BYTES" => self.max_body_bytes = parse_number(key, value)?,
                "WEFT_SHUTDOWN_GRACE" => self.shutdown_grace = parse_duration()?,
                "WEFT_DEFAULT_CONCURRENCY" => self.default_concurrency = parse_number(key, value)?,
                "WEFT_HTTP__CONNECT_TIMEOUT" => self.http.connect_timeout = parse_duration()?,
                "WEFT_HTTP__POOL_IDLE_PER_HOST" => {
                    self.http.pool_idle_per_host = parse_number(key, value)?
                }
                "WEFT_REQUEST_TIMEOUT" => self.request_timeout = parse_duration()?,
                "WEFT_MAX_INFLIGHT_REQUESTS" => {
                    self.max_inflight_requests = parse_number(key, value)?
                }
                "WEFT_DATABASE_URL" => self.database_url = non_empty(value),
                "WEFT_POSTGRES__SCHEMA" => self.postgres.schema = value.trim().to_string(),
                "WEFT_POSTGRES__POOL_SIZE" => self.postgres.pool_size = parse_number(key, value)?,
                "WEFT_POSTGRES__CONNECT_WAIT" => self.postgres.connect_wait = parse_duration()?,
                "WEFT_NODE_ID" => self.node_id = Some(value.trim().to_string()),
                "WEFT_CLUSTER__LEASE" => self.cluster.lease = parse_duration()?,
                "WEFT_CLUSTER__LEADER_TTL" => self.cluster.leader_ttl = parse_duration()?,
                "WEFT_CLUSTER__POLL" => self.cluster.poll = parse_duration()?,
                "WEFT_CLUSTER__WORKER_QUEUES" => self.cluster.worker_queues = split_list(value),
                "WEFT_RETENTION__DAYS" => self.retention.days = parse_number(key, value)?,
                "WEFT_RETENTION__EVERY" => self.retention.every = parse_duration()?,
                "WEFT_TRUST_PROXY" => self.trust_proxy = parse_bool(key, value)?,
                "WEFT_EVENTS__BUFFER" => self.events.buffer = parse_number(key, value)?,
                "WEFT_EVENTS__SUBSCRIBER_LAG" => {
                    self.events.subscriber_lag = parse_number(key, value)?
                }
                k if k.starts_with("WEFT_EMAIL__") => self.email.apply_env(k, value)?,
                k if k.starts_with("WEFT_LIMITS__") => {
                    let rate = parse_rate(value).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
                    match &k["WEFT_LIMITS__".len()..] {
                        "PER_IP" => self.limits.per_ip = rate,
                        "PER_KEY" => self.limits.per_key = rate,
                        "READ" => self.limits.read = rate,
                        "WRITE" => self.limits.write = rate,
                        "BATCH" => self.limits.batch = rate,
                        _ => bail!("{}", unknown_env(k)),
                    }
                }
                k if k.starts_with(ENV_QUEUE_RATE_PREFIX)
                    && k.len() > ENV_QUEUE_RATE_PREFIX.len() =>
                {
                    let rate = super::queue_rates::parse(value)
                        .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
                    let name = k[ENV_QUEUE_RATE_PREFIX.len()..].to_ascii_lowercase();
                    self.queue_rates.insert(name, rate);
                }
                k => match k.strip_prefix(ENV_QUEUE_PREFIX) {
                    Some(name) if !name.is_empty() => {
                        self.queues
                            .insert(name.to_ascii_lowercase(), parse_number(key, value)?);
                    }
                    _ => bail!("{}", unknown_env(k)),
                },
            }
        }
        Ok(())
    }
}

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> anyhow::Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{key}={value:?}: expected a whole number"))
}

fn parse_bool(key: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("{key}={value:?}: expected `true` or `false`"),
    }
}

fn parse_durability(key: &str, value: &str) -> anyhow::Result<Durability> {
    match value.trim().to_ascii_lowercase().as_str() {
        "full" => Ok(Durability::Full),
        "normal" => Ok(Durability::Normal),
        _ => bail!("{key}={value:?}: expected `full` or `normal`"),
    }
}

fn bare_key(key: &str) -> &str {
    key.strip_prefix("WEFT_").unwrap_or(key)
}

pub(super) fn unknown_env(key: &str) -> String {
    let allowed: Vec<&str> = ENV_KEYS.iter().chain(ENV_NOT_CONFIG).copied().collect();
    // Compared without the shared prefix, which would make every name look alike.
    let hint = weft_core::closest(bare_key(key), allowed.iter().map(|k| bare_key(k)))
        .map(|c| format!(" (did you mean WEFT_{c}?)"))
        .unwrap_or_default();
    format!(
        "unknown environment variable {key}{hint}; weft reads {}, and {ENV_QUEUE_PREFIX}<NAME>",
        allowed.join(", ")
    )
}
