//! The `weft` binary: the server (`weft up`, or `weft serve` for a cluster), client commands for a running server, local
//! runs and store maintenance.
//!
//! Exit codes: 0 success; 1 a failure the user can act on (a server error, an invalid flow,
//! a run that did not succeed); 2 the server could not be reached, or the command line is
//! wrong.

mod args;
mod bench;
mod client;
mod commands;
mod config;
mod loadtest;
mod local;
mod output;
mod serve;
mod store;
mod up;
mod validate;

use args::{Cli, Command, RunArgs};
use clap::Parser;
use std::fmt;
use std::io::IsTerminal;
use std::process::ExitCode;

/// The command already told the user what went wrong; exit with this code.
#[derive(Debug)]
pub struct Failed(pub u8);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed (exit code {})", self.0)
    }
}

impl std::error::Error for Failed {}

/// mimalloc instead of the system allocator: the gateway and the engine allocate many small,
/// short-lived buffers per request and per task, where glibc's malloc/free cost ~8% of the
/// server's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    // Work still queued on the runtime (idle connections, stopped dispatchers) is dropped:
    // every command has finished or handed back its work by now.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Migrate(args) => local::migrate(args).await,
        Command::Apikey(cmd) => commands::apikey(cmd).await,
        Command::Run(RunArgs {
            command: Some(cmd), ..
        }) => commands::run(cmd).await,
        Command::Run(RunArgs {
            command: None,
            local,
        }) => local::run(local).await,
        Command::Flow(cmd) => commands::flow(cmd).await,
        Command::Dlq(cmd) => commands::dlq(cmd).await,
        Command::Queue(cmd) => commands::queue(cmd).await,
        Command::Limit(cmd) => commands::limit(cmd).await,
        Command::Schedule(cmd) => commands::schedule(cmd).await,
        Command::Nodes(args) => commands::nodes(args).await,
        Command::Workers(args) => commands::workers(args).await,
        Command::Breakers(args) => commands::breakers(args).await,
        Command::Openapi(args) => commands::openapi(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Loadtest(args) => loadtest::run(args).await,
        Command::Validate(args) => validate::run(args).await,
    }
}

/// Prints an error to stderr and picks the exit code.
fn report(e: anyhow::Error) -> ExitCode {
    if let Some(Failed(code)) = e.downcast_ref::<Failed>() {
        return ExitCode::from(*code);
    }
    if let Some(u) = e.downcast_ref::<client::Unreachable>() {
        eprintln!("error: {u}");
        return ExitCode::from(2);
    }
    if let Some(api) = e.downcast_ref::<client::ApiError>() {
        // Already reads `error (code): message`.
        eprintln!("{api}");
        return ExitCode::FAILURE;
    }
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

/// Logs go to stderr, filtered by `WEFT_LOG` (default `info`).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("WEFT_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("warning: WEFT_LOG={spec:?} is not a log filter ({e}); using `info`");
            EnvFilter::new("info")
        }),
        Err(_) => EnvFilter::new("info"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
