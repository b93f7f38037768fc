//! Commands that work on a store directly, without a server: `weft run FILE --local` (try a
//! flow on an in-process engine) and `weft migrate`.

use crate::Failed;
use crate::args::{LocalArgs, MigrateArgs};
use crate::commands::read_input;
use crate::output;
use crate::store::{self, open_sqlite};
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
    let store = open_sqlite(&dir, durability)?;
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
            ..StartRun::default()
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

/// Opens the configured store, migrating it (several at once are safe: SQLite locks the
/// file, PostgreSQL takes an advisory lock), and prints the schema version.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let store = store::open(&config).await?;
    let version = store.schema_version().await;
    store.close();
    let version = version.context("cannot read the schema version")?.found;
    match &config.database_url {
        None => eprintln!(
            "database in {} is at schema version {version}",
            config.data_dir.display()
        ),
        Some(_) => eprintln!(
            "{} is at schema version {version}",
            store::describe(&config)
        ),
    }
    output::print_stdout(&format!("{version}\n"));
    Ok(())
}
