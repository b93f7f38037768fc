//! `weft up`'s settings: one serde tree, read as defaults < TOML file < `WEFT_*` environment
//! < command-line flags, then validated once. Every source goes through the same checks, so
//! a bad value is reported the same way wherever it came from, and a misspelt key or
//! variable is an error rather than a silently ignored setting.

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weft_api::limits::Rate;
use weft_engine::EngineConfig;
use weft_store_sqlite::Durability;

mod cluster;
mod email;
mod env;
pub(crate) mod queue_rates;
mod store;
#[cfg(test)]
mod tests;

pub use cluster::{ClusterSettings, Roles, split_list};
pub use email::EmailSettings;
pub use store::{DatabaseUrl, PostgresConfig};

/// Where the database lives when nothing says otherwise.
pub const DEFAULT_DATA_DIR: &str = "./weft-data";
/// Where the HTTP API listens when nothing says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Largest accepted request body: the API's own default.
pub const DEFAULT_MAX_BODY_BYTES: usize = weft_api::DEFAULT_MAX_BODY_BYTES;
/// Largest concurrency a queue may be given.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "WEFT_CONFIG";

/// Everything `weft up` can be told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory holding the SQLite database (unused when `database_url` is set).
    /// Default [`DEFAULT_DATA_DIR`].
    pub data_dir: PathBuf,
    /// A `postgres://` or `postgresql://` URL: when set, the store is that PostgreSQL
    /// database instead of SQLite in `data_dir`. Default: none.
    pub database_url: Option<DatabaseUrl>,
    /// The PostgreSQL store's settings.
    pub postgres: PostgresConfig,
    /// Address of the HTTP API, `IP:PORT`. Default [`DEFAULT_LISTEN`].
    pub listen: String,
    /// Directory whose `*.yaml`, `*.yml` and `*.json` flows are applied at start. Default: none.
    pub flows_dir: Option<PathBuf>,
    /// Commit durability, `full` or `normal`. Default `full`.
    pub durability: Durability,
    /// Largest accepted request body in bytes. Default [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// How long shutdown waits for running attempts, e.g. `30s`.
    /// Default [`weft_engine::DEFAULT_SHUTDOWN_GRACE`].
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_grace: Duration,
    /// Concurrency of queues not listed in `queues` (1 to [`MAX_CONCURRENCY`]).
    /// Default [`weft_engine::DEFAULT_CONCURRENCY`].
    pub default_concurrency: u32,
    /// Concurrency per queue, e.g. `email = 20`. Default: none.
    pub queues: BTreeMap<String, u32>,
    /// Rate limit per queue, e.g. `invoicing = {limit = 10, per = "1s"}`: at most `limit`
    /// starts per `per` across the queue's tasks. Default: none.
    pub queue_rates: BTreeMap<String, queue_rates::QueueRateConfig>,
    /// The `http` node's client.
    pub http: HttpConfig,
    /// Longest an API request may take before it gets 503, e.g. `30s`.
    /// Default [`weft_api::DEFAULT_REQUEST_TIMEOUT`].
    #[serde(deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// API requests answered at once; more get 503 `overloaded`.
    /// Default [`weft_api::DEFAULT_MAX_INFLIGHT_REQUESTS`].
    pub max_inflight_requests: usize,
    /// Read the client IP from `X-Forwarded-For` (only behind a proxy that sets it). Default false.
    pub trust_proxy: bool,
    /// API rate limits.
    pub limits: LimitsConfig,
    /// The live event stream (`/v1/events`).
    pub events: EventsConfig,
    /// This process's name among the processes sharing a database (`weft serve`).
    /// Default `<hostname>-<pid>`.
    pub node_id: Option<String>,
    /// `weft serve`'s leases and polling.
    pub cluster: ClusterSettings,
    /// How long finished runs are kept.
    pub retention: RetentionConfig,
    /// The `email` node's default SMTP server.
    pub email: EmailSettings,
}

/// History retention: finished runs older than `days` are removed every `every` (by the
/// leader, in a cluster). PostgreSQL drops whole daily partitions, so there a day is
/// removed once all of it is older than `days` and none of its runs is still live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days of finished runs to keep; 0 keeps them for ever. Default 0.
    pub days: u32,
    /// Time between two passes, e.g. `1h`. Default 1h.
    #[serde(deserialize_with = "de_duration")]
    pub every: Duration,
}

/// Most days `retention.days` may be (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            days: 0,
            every: weft_engine::DEFAULT_RETENTION_EVERY,
        }
    }
}

impl RetentionConfig {
    /// Every problem with these values.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.days > MAX_RETENTION_DAYS {
            problems.push(format!(
                "retention.days = {}: at most {MAX_RETENTION_DAYS}; 0 keeps history for ever",
                self.days
            ));
        }
        if self.every < Duration::from_secs(1) || self.every > Duration::from_secs(7 * 86_400) {
            problems.push(format!(
                "retention.every = {}: must be between 1s and 7d",
                weft_core::duration::format(self.every)
            ));
        }
        problems
    }

    /// The engine's retention, if history is not kept for ever.
    pub fn engine(&self) -> Option<weft_engine::Retention> {
        (self.days > 0).then(|| weft_engine::Retention {
            every: self.every,
            ..weft_engine::Retention::days(self.days)
        })
    }
}

/// The live event stream's buffer and its tolerance for slow subscribers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events kept for resumption (`Last-Event-ID`). Default [`weft_engine::DEFAULT_EVENT_BUFFER`].
    pub buffer: usize,
    /// Live events a subscriber may leave unread before it is dropped.
    /// Default [`weft_engine::DEFAULT_SUBSCRIBER_LAG`].
    pub subscriber_lag: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            buffer: weft_engine::DEFAULT_EVENT_BUFFER,
            subscriber_lag: weft_engine::DEFAULT_SUBSCRIBER_LAG,
        }
    }
}

/// API rate limits, each `"N/s"`, `"N/m"` or `"N/h"` with an optional `" burst B"`, or
/// `"off"`. Defaults: the `weft_api::limits::DEFAULT_*` constants.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Per client IP.
    #[serde(deserialize_with = "de_rate")]
    pub per_ip: Option<Rate>,
    /// Per API key.
    #[serde(deserialize_with = "de_rate")]
    pub per_key: Option<Rate>,
    /// Reads (`GET`) per client.
    #[serde(deserialize_with = "de_rate")]
    pub read: Option<Rate>,
    /// Writes per client.
    #[serde(deserialize_with = "de_rate")]
    pub write: Option<Rate>,
    /// Batch requests per client.
    #[serde(deserialize_with = "de_rate")]
    pub batch: Option<Rate>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = weft_api::limits::Limits::default();
        Self {
            per_ip: l.per_ip,
            per_key: l.per_key,
            read: l.read,
            write: l.write,
            batch: l.batch,
        }
    }
}

fn parse_rate(text: &str) -> Result<Option<Rate>, String> {
    match text.trim() {
        "off" => Ok(None),
        t => t.parse().map(Some),
    }
}

fn de_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
    parse_rate(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Settings of the client `http` nodes share.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Connection set-up timeout, e.g. `10s`. Default: [`EngineConfig::default`]'s.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host. Default: [`EngineConfig::default`]'s.
    pub pool_idle_per_host: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            postgres: PostgresConfig::default(),
            listen: DEFAULT_LISTEN.to_string(),
            flows_dir: None,
            durability: Durability::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: weft_engine::DEFAULT_SHUTDOWN_GRACE,
            default_concurrency: weft_engine::DEFAULT_CONCURRENCY,
            queues: BTreeMap::new(),
            queue_rates: BTreeMap::new(),
            http: HttpConfig::default(),
            request_timeout: weft_api::DEFAULT_REQUEST_TIMEOUT,
            max_inflight_requests: weft_api::DEFAULT_MAX_INFLIGHT_REQUESTS,
            trust_proxy: false,
            limits: LimitsConfig::default(),
            events: EventsConfig::default(),
            node_id: None,
            cluster: ClusterSettings::default(),
            retention: RetentionConfig::default(),
            email: EmailSettings::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        Self {
            connect_timeout: engine.http_connect_timeout,
            pool_idle_per_host: engine.http_pool_idle_per_host,
        }
    }
}

/// Values given as command-line flags; they win over every other source.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--flows`.
    pub flows_dir: Option<PathBuf>,
    /// `--durability`.
    pub durability: Option<Durability>,
    /// `--database-url` (an empty value means SQLite).
    pub database_url: Option<String>,
    /// `--connect-wait`.
    pub connect_wait: Option<Duration>,
    /// `--node-id`.
    pub node_id: Option<String>,
    /// `--lease`.
    pub lease: Option<Duration>,
    /// `--leader-ttl`.
    pub leader_ttl: Option<Duration>,
    /// `--poll`.
    pub poll: Option<Duration>,
    /// `--queues`.
    pub worker_queues: Option<Vec<String>>,
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    weft_core::duration::parse(&text).map_err(serde::de::Error::custom)
}

/// The config file to read: `--config`, else `WEFT_CONFIG`, else none.
pub fn config_path(flag: Option<&Path>, env: &[(String, String)]) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| {
        env.iter()
            .find(|(k, v)| k == CONFIG_ENV && !v.is_empty())
            .map(|(_, v)| PathBuf::from(v))
    })
}

/// The process environment's `WEFT_*` variables (others are never looked at).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with("WEFT_")
                .then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect()
}

impl Config {
    /// Reads every source in order of precedence and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: &Overrides,
    ) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.apply_flags(flags);
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file over the defaults; unknown keys are errors naming the key and file.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("config file {}", path.display()))
    }

    fn from_toml(text: &str) -> anyhow::Result<Config> {
        // toml's message names the offending key, its line and what is allowed instead.
        Ok(toml::from_str(text)?)
    }

    fn apply_flags(&mut self, flags: &Overrides) {
        if let Some(d) = &flags.data_dir {
            self.data_dir = d.clone();
        }
        if let Some(l) = &flags.listen {
            self.listen = l.clone();
        }
        if let Some(f) = &flags.flows_dir {
            self.flows_dir = Some(f.clone());
        }
        if let Some(d) = flags.durability {
            self.durability = d;
        }
        if let Some(url) = &flags.database_url {
            self.database_url = store::non_empty(url);
        }
        if let Some(w) = flags.connect_wait {
            self.postgres.connect_wait = w;
        }
        if let Some(n) = &flags.node_id {
            self.node_id = Some(n.trim().to_string());
        }
        if let Some(l) = flags.lease {
            self.cluster.lease = l;
        }
        if let Some(t) = flags.leader_ttl {
            self.cluster.leader_ttl = t;
        }
        if let Some(p) = flags.poll {
            self.cluster.poll = p;
        }
        if let Some(q) = &flags.worker_queues {
            self.cluster.worker_queues = q.clone();
        }
    }

    /// Checks every value, reporting all problems at once.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "listen = {:?}: not a socket address; expected IP:PORT, e.g. {DEFAULT_LISTEN}",
                self.listen
            ));
        }
        if self.max_body_bytes == 0 {
            problems.push("max_body_bytes = 0: must be at least 1".to_string());
        }
        if self.max_inflight_requests == 0 {
            problems.push("max_inflight_requests = 0: must be at least 1".to_string());
        }
        if self.events.buffer == 0 {
            problems.push("events.buffer = 0: must be at least 1".to_string());
        }
        if self.events.subscriber_lag == 0 {
            problems.push("events.subscriber_lag = 0: must be at least 1".to_string());
        }
        if self.request_timeout.is_zero() {
            problems.push("request_timeout = 0s: must be longer than zero".to_string());
        }
        if let Some(url) = &self.database_url
            && let Some(why) = url.problem()
        {
            problems.push(format!("database_url = {:?}: {why}", url.shown()));
        }
        problems.extend(self.postgres.problems());
        problems.extend(self.cluster.problems());
        problems.extend(self.retention.problems());
        problems.extend(self.email.problems());
        if let Some(id) = &self.node_id
            && (id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
        {
            problems.push(format!(
                "node_id = {id:?}: use 1 to 128 printable characters"
            ));
        }
        if let Some(p) = concurrency_problem("default_concurrency", self.default_concurrency) {
            problems.push(p);
        }
        for (name, &limit) in &self.queues {
            if !weft_core::is_valid_name(name) {
                problems.push(format!(
                    "queues.{}: not a valid queue name; use 1 to 128 letters, digits, `_`, `-` or `.`",
                    toml_key(name)
                ));
            }
            if let Some(p) = concurrency_problem(&format!("queues.{}", toml_key(name)), limit) {
                problems.push(p);
            }
        }
        for (name, rate) in &self.queue_rates {
            if let Err(p) = queue_rates::check(&toml_key(name), rate) {
                problems.extend(p);
            }
        }
        match problems.as_slice() {
            [] => Ok(()),
            [one] => bail!("invalid configuration: {one}"),
            many => bail!("invalid configuration:\n  {}", many.join("\n  ")),
        }
    }

    /// The listen address (checked by [`Config::validate`]).
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen
            .parse()
            .with_context(|| format!("listen = {:?} is not a socket address", self.listen))
    }

    /// The API's share of the settings.
    pub fn api_options(&self) -> weft_api::ApiOptions {
        let l = &self.limits;
        weft_api::ApiOptions {
            max_body_bytes: self.max_body_bytes,
            limits: weft_api::limits::Limits {
                per_ip: l.per_ip,
                per_key: l.per_key,
                read: l.read,
                write: l.write,
                batch: l.batch,
            },
            request_timeout: self.request_timeout,
            max_inflight_requests: self.max_inflight_requests,
            trust_proxy: self.trust_proxy,
        }
    }

    /// The engine's share of the settings.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            queues: self.queues.clone(),
            queue_rates: queue_rates::engine(&self.queue_rates),
            default_concurrency: self.default_concurrency,
            run_workers: true,
            http_connect_timeout: self.http.connect_timeout,
            http_pool_idle_per_host: self.http.pool_idle_per_host,
            event_buffer: self.events.buffer,
            event_subscriber_lag: self.events.subscriber_lag,
            // One process owning its store, on either driver.
            cluster: None,
            retention: self.retention.engine(),
            email: self.email.engine(),
            ..EngineConfig::default()
        }
    }
}

/// A key as TOML would need it written: bare when it can be, quoted otherwise.
fn toml_key(name: &str) -> String {
    if weft_core::is_valid_name(name) && !name.contains('.') {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

fn concurrency_problem(field: &str, value: u32) -> Option<String> {
    (!(1..=MAX_CONCURRENCY).contains(&value))
        .then(|| format!("{field} = {value}: concurrency must be between 1 and {MAX_CONCURRENCY}"))
}
