//! Commands that work on a store directly, without a server: `weft run FILE --local` (try a
//! flow on an in-process engine) and `weft migrate`.

use crate::Failed;
use crate::args::{LocalArgs, MigrateArgs};
use crate::commands::read_input;
use crate::config::{self, Config, Overrides};
use crate::output;
use crate::up::open_store;
use anyhow::Context;
use std::time::Duration;
use weft_core::RunState;
use weft_engine::{Engine, EngineConfig, EngineError, StartRun};
use weft_store_sqlite::Durability;

/// How long a local run's engine waits for stragglers once the run is over.
const LOCAL_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Applies FILE to an engine over a throw-away store, runs it to the end and prints the run
/// as JSON; fails (exit 1) unless the run succeeded.
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    let file = args.file.context("give a flow FILE to run with --local")?;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let input = read_input(&args.input)?;

    // A temporary store is gone at exit, so it need not survive a power loss.
    let temp;
    let (dir, durability) = match args.data_dir {
        Some(dir) => (dir, Durability::Full),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            (temp.path().to_path_buf(), Durability::Normal)
        }
    };
    let store = open_store(&dir, durability)?;
    let engine = Engine::start(store, EngineConfig::default())
        .await
        .context("cannot start the engine")?;

    let applied = match engine.flow_apply(&text).await {
        Ok(a) => a,
        Err(EngineError::Invalid(spec)) => {
            eprintln!("error: {}: invalid flow", file.display());
            for issue in &spec.issues {
                eprintln!("  {issue}");
            }
            return Err(Failed(1).into());
        }
        Err(e) => return Err(e).context(format!("cannot apply {}", file.display())),
    };
    let created = engine
        .run_start(StartRun {
            flow: applied.name,
            version: Some(applied.version),
            input,
            idempotency_key: None,
        })
        .await
        .context("cannot start the run")?;
    let view = engine
        .wait_run(&created.id)
        .await
        .context("cannot follow the run")?;
    engine.shutdown(LOCAL_SHUTDOWN_GRACE).await;

    output::print_json(&serde_json::to_value(&view).context("cannot print the run")?);
    if view.run.state != RunState::Succeeded {
        eprintln!("run {} {}", view.run.id, view.run.state);
        return Err(Failed(1).into());
    }
    Ok(())
}

/// Opens the configured store, migrating it, and prints the schema version.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let env = config::process_env();
    let file = config::config_path(args.config.config.as_deref(), &env);
    let flags = Overrides {
        data_dir: args.config.data_dir,
        ..Overrides::default()
    };
    let config = Config::load(file.as_deref(), &env, &flags)?;
    open_store(&config.data_dir, config.durability)?;
    eprintln!(
        "database in {} is at schema version {}",
        config.data_dir.display(),
        weft_store_sqlite::SCHEMA_VERSION
    );
    output::print_stdout(&format!("{}\n", weft_store_sqlite::SCHEMA_VERSION));
    Ok(())
}
