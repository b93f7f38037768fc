//! Opening the configured store: SQLite in `data_dir`, or PostgreSQL when `database_url` is
//! set. Either is migrated on open. While a PostgreSQL server cannot be reached the open is
//! retried with back-off for `postgres.connect_wait`; a server that answers with a refusal
//! (bad password, no such database) fails at once. Messages name `host:port`, never the URL.

use crate::config::{Config, DatabaseUrl, PostgresConfig};
use anyhow::{Context, bail};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use weft_store::DynStore;
use weft_store_postgres::{PgOptions, PostgresStore};
use weft_store_sqlite::{Durability, SqliteOptions, SqliteStore};

/// First pause between connection attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest a single connection attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating and migrating if needed) the SQLite store in `data_dir`.
pub fn open_sqlite(data_dir: &Path, durability: Durability) -> anyhow::Result<DynStore> {
    let opts = SqliteOptions {
        durability,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(data_dir, opts).map_err(anyhow::Error::msg)?;
    Ok(store)
}

/// Opens and migrates the store `config` names.
pub async fn open(config: &Config) -> anyhow::Result<DynStore> {
    match &config.database_url {
        None => open_sqlite(&config.data_dir, config.durability),
        Some(url) => Ok(open_postgres(url, &config.postgres).await?),
    }
}

/// Where the configured store is, for people: never a password.
pub fn describe(config: &Config) -> String {
    match &config.database_url {
        None => format!("SQLite in {}", config.data_dir.display()),
        Some(url) => format!(
            "PostgreSQL at {}, schema {}",
            endpoint(url),
            config.postgres.schema
        ),
    }
}

fn endpoint(url: &DatabaseUrl) -> String {
    url.endpoint().unwrap_or_else(|| "?".into())
}

/// Connects to PostgreSQL (waiting up to `pg.connect_wait` for it to become reachable) and
/// migrates `pg.schema`.
pub async fn open_postgres(
    url: &DatabaseUrl,
    pg: &PostgresConfig,
) -> anyhow::Result<Arc<PostgresStore>> {
    wait_reachable(url, pg.connect_wait).await?;
    let opts = PgOptions {
        schema: Some(pg.schema.clone()),
        pool_size: pg.pool_size,
        ..PgOptions::default()
    };
    let store = PostgresStore::connect(url.as_str(), opts)
        .await
        .map_err(anyhow::Error::msg)?;
    store.migrate().await.map_err(anyhow::Error::msg)?;
    Ok(store)
}

/// Why one connection attempt failed.
enum Attempt {
    /// The server could not be reached, or said to try again later: worth retrying.
    Unreachable(String),
    /// The server answered and refused (authentication, unknown database...): final.
    Refused(String),
}

/// Tries to connect until it works, the server refuses, or `wait` has passed.
async fn wait_reachable(url: &DatabaseUrl, wait: Duration) -> anyhow::Result<()> {
    let mut cfg = tokio_postgres::Config::from_str(url.as_str())
        .map_err(|e| anyhow::anyhow!("database_url is not a valid PostgreSQL URL: {e}"))?;
    if cfg.get_application_name().is_none() {
        cfg.application_name("weft");
    }
    let at = endpoint(url);
    let deadline = Instant::now() + wait;
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        cfg.connect_timeout(left.clamp(Duration::from_secs(1), ATTEMPT_TIMEOUT));
        let why = match try_connect(&cfg).await {
            Ok(()) => return Ok(()),
            Err(Attempt::Refused(why)) => bail!("cannot connect to PostgreSQL at {at}: {why}"),
            Err(Attempt::Unreachable(why)) => why,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "cannot connect to PostgreSQL at {at}: {why} (gave up after {attempt} attempt{} in {})",
                if attempt == 1 { "" } else { "s" },
                humantime::format_duration(round_ms(wait))
            );
        }
        let pause = backoff.min(left);
        tracing::warn!(
            attempt,
            "PostgreSQL at {at} is not reachable ({why}); retrying in {}, giving up in {}",
            humantime::format_duration(round_ms(pause)),
            humantime::format_duration(round_ms(left))
        );
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// One connection attempt, closed again at once.
async fn try_connect(cfg: &tokio_postgres::Config) -> Result<(), Attempt> {
    match cfg.connect(tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            let connection = tokio::spawn(connection);
            drop(client);
            let _ = connection.await;
            Ok(())
        }
        Err(e) => Err(classify(&e)),
    }
}

fn classify(e: &tokio_postgres::Error) -> Attempt {
    use tokio_postgres::error::SqlState;
    match e.as_db_error() {
        // Starting up, shutting down, or out of connection slots: it will answer later.
        Some(d)
            if [
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::ADMIN_SHUTDOWN,
            ]
            .contains(d.code()) =>
        {
            Attempt::Unreachable(d.message().to_string())
        }
        Some(d) => Attempt::Refused(d.message().to_string()),
        None => Attempt::Unreachable(deepest_cause(e)),
    }
}

/// The innermost error's text ("Connection refused (os error 111)"), which says more than
/// the outer "error connecting to server".
fn deepest_cause(e: &tokio_postgres::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    match cause.to_string() {
        t if t.is_empty() => e.to_string(),
        t => t,
    }
}

/// Drops `schema` and everything in it (for `weft bench`'s throw-away schemas).
pub async fn drop_schema(url: &DatabaseUrl, schema: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url.as_str(), tokio_postgres::NoTls)
        .await
        .map_err(|e| anyhow::anyhow!("{}", deepest_cause(&e)))
        .with_context(|| format!("cannot connect to PostgreSQL at {}", endpoint(url)))?;
    let connection = tokio::spawn(connection);
    // The name is generated by weft: a plain lowercase identifier.
    let result = client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .with_context(|| format!("cannot drop PostgreSQL schema {schema}"));
    drop(client);
    let _ = connection.await;
    result
}
