//! `weft bench`'s arguments and its store: SQLite in a temporary directory, or PostgreSQL in
//! a fresh schema `weft_bench_<random>` that is dropped when the bench is over.

use super::Workload;
use crate::config::{DatabaseUrl, PostgresConfig};
use crate::store;
use anyhow::Context;
use serde_json::{Value, json};
use std::time::Duration;
use weft_engine::{Engine, EngineConfig};
use weft_store::DynStore;
use weft_store_sqlite::Durability;

/// How long the bench waits for PostgreSQL to become reachable.
const BENCH_CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Arguments of `weft bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: Workload,
    /// The store to measure.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreArg,
    /// PostgreSQL to use with --store postgres (a postgres:// URL); each run works in a
    /// fresh schema that it drops afterwards.
    #[arg(long, value_name = "URL", required_if_eq("store", "postgres"))]
    pub database_url: Option<DatabaseUrl>,
    /// Pooled PostgreSQL connections (--store postgres). Default 16.
    #[arg(long, default_value_t = crate::config::PostgresConfig::default().pool_size)]
    pub pool_size: usize,
    /// Runs to enqueue (drain, inflight). Default 100000.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Worker concurrency of the queue. Default 64.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Arrivals per second (latency). Default 200.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Seconds of arrivals (latency). Default 10.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Nodes in the chain (chain). Default 400.
    #[arg(long, default_value_t = 400)]
    pub steps: usize,
    /// Children of the fan-out (fanout). Default 1000.
    #[arg(long, default_value_t = 1000)]
    pub width: usize,
    /// Reads to time (inflight). Default 20000.
    #[arg(long, default_value_t = 20_000)]
    pub reads: usize,
    /// Schedules to create (schedules). Default 10000.
    #[arg(long, default_value_t = 10_000)]
    pub schedules: usize,
    /// Spread the schedules over the 60 seconds of a minute instead of all firing every
    /// second (schedules).
    #[arg(long)]
    pub spread: bool,
    /// Seconds of ticks left out before the measured ones (schedules). Default 5, how far
    /// ahead ticks are prepared: every measured tick then fires as in steady state. With 0
    /// the first ticks after applying all the schedules at once are measured too (their
    /// runs are created at the tick, not prepared ahead).
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Commit durability of the SQLite store.
    #[arg(long, value_enum, default_value = "full")]
    pub durability: DurabilityArg,
    /// Give every drain task a concurrency key, one of this many distinct values, with
    /// limit --key-limit (drain). Default 0: no key.
    #[arg(long, default_value_t = 0)]
    pub keys: usize,
    /// Each key's concurrency limit with --keys (drain). Default 1.
    #[arg(long, default_value_t = 1)]
    pub key_limit: u32,
    /// With --keys, also a per-key rate limit of LIMIT per INTERVAL, e.g. `1000/1s` (drain).
    #[arg(long, value_name = "LIMIT/INTERVAL", requires = "keys")]
    pub key_rate: Option<String>,
    /// Directory for the SQLite store (default: a fresh temporary directory).
    #[arg(long, conflicts_with = "database_url")]
    pub data_dir: Option<std::path::PathBuf>,
}

/// `--store` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreArg {
    /// The embedded SQLite store.
    Sqlite,
    /// A PostgreSQL server (needs --database-url).
    Postgres,
}

/// `--durability` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DurabilityArg {
    /// synchronous=FULL.
    Full,
    /// synchronous=NORMAL.
    Normal,
}

/// What to remove when the bench is over.
enum Scratch {
    /// A temporary directory (removed on drop), or none for `--data-dir`.
    Sqlite { _dir: Option<tempfile::TempDir> },
    /// A schema of its own.
    Postgres { url: DatabaseUrl, schema: String },
}

/// An engine over a fresh store.
pub struct Bench {
    pub engine: Engine,
    store: DynStore,
    scratch: Scratch,
    labels: Vec<(&'static str, Value)>,
}

/// Opens a fresh store of the chosen kind and starts an engine on it.
pub async fn setup(args: &BenchArgs) -> anyhow::Result<Bench> {
    let (store, scratch, labels): (DynStore, _, _) = match args.store {
        StoreArg::Sqlite => {
            let (dir, path) = match &args.data_dir {
                Some(p) => (None, p.clone()),
                None => {
                    let d = tempfile::tempdir().context("creating a temporary directory")?;
                    let p = d.path().to_path_buf();
                    (Some(d), p)
                }
            };
            let durability = match args.durability {
                DurabilityArg::Full => Durability::Full,
                DurabilityArg::Normal => Durability::Normal,
            };
            let labels = vec![
                ("store", json!("sqlite")),
                (
                    "durability",
                    json!(format!("{:?}", args.durability).to_lowercase()),
                ),
            ];
            let store = store::open_sqlite(&path, durability)?;
            (store, Scratch::Sqlite { _dir: dir }, labels)
        }
        StoreArg::Postgres => {
            let url = args
                .database_url
                .clone()
                .context("--store postgres needs --database-url")?;
            if let Some(why) = url.problem() {
                anyhow::bail!("--database-url {:?}: {why}", url.shown());
            }
            let schema = format!("weft_bench_{}", uuid::Uuid::now_v7().simple());
            let pg = PostgresConfig {
                schema: schema.clone(),
                pool_size: args.pool_size,
                connect_wait: BENCH_CONNECT_WAIT,
            };
            let labels = vec![
                ("store", json!("postgres")),
                ("pool_size", json!(args.pool_size)),
                ("schema", json!(schema)),
            ];
            let opened = store::open_postgres(&url, &pg).await;
            let scratch = Scratch::Postgres { url, schema };
            match opened {
                Ok(s) => (s as DynStore, scratch, labels),
                Err(e) => {
                    // A failed migration may have created the schema already.
                    cleanup(&scratch).await.ok();
                    return Err(e);
                }
            }
        }
    };
    let mut config = EngineConfig::default();
    config.queues.insert("default".into(), args.concurrency);
    let engine = match Engine::start(store.clone(), config).await {
        Ok(e) => e,
        Err(e) => {
            store.close();
            cleanup(&scratch).await.ok();
            return Err(e.into());
        }
    };
    Ok(Bench {
        engine,
        store,
        scratch,
        labels,
    })
}

impl Bench {
    /// The store's fields of the JSON line.
    pub fn labels(&self) -> Vec<(&'static str, Value)> {
        self.labels.clone()
    }

    /// Stops the engine, closes the store and removes it.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.engine.shutdown(Duration::from_secs(5)).await;
        self.store.close();
        cleanup(&self.scratch).await
    }
}

async fn cleanup(scratch: &Scratch) -> anyhow::Result<()> {
    match scratch {
        Scratch::Sqlite { .. } => Ok(()),
        Scratch::Postgres { url, schema } => store::drop_schema(url, schema).await,
    }
}
