//! The command line, declared with clap's derive API. Only shapes live here; each command's
//! behaviour is in its own module.

use crate::bench;
use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use weft_core::RunState;
use weft_store_sqlite::Durability;

/// Server URL client commands use when neither `--url` nor `WEFT_URL` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// weft: a durable flow-orchestration engine in one binary.
#[derive(Parser, Debug)]
#[command(name = "weft", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the weft server: store, engine and HTTP API, until SIGTERM or SIGINT.
    Up(UpArgs),
    /// Apply and read flows on a server.
    #[command(subcommand)]
    Flow(FlowCmd),
    /// Start, read, list and cancel runs on a server; or run a flow file in-process with
    /// `weft run FILE --local`.
    Run(RunArgs),
    /// Read and replay dead-lettered tasks on a server.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// Read and change queues on a server.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// List the node types a flow may use.
    Nodes(NodesArgs),
    /// List the worker processes with their queues and load.
    Workers(NodesArgs),
    /// Print the server's OpenAPI document (JSON).
    Openapi(NodesArgs),
    /// Create or migrate the database and print its schema version.
    Migrate(MigrateArgs),
    /// Create, list and revoke API keys (on the data directory; no server needed).
    #[command(subcommand)]
    Apikey(ApikeyCmd),
    /// Measure throughput and latency.
    Bench(bench::BenchArgs),
}

/// Where the config comes from; shared by `up` and `migrate`.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// TOML config file [env: WEFT_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the database [default: ./weft-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `weft up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address the HTTP API listens on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory of flow files (*.yaml, *.yml, *.json) applied at start
    #[arg(long, value_name = "DIR")]
    pub flows: Option<PathBuf>,
    /// Commit durability [default: full]
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
}

/// `--durability` values.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum DurabilityArg {
    /// Every commit reaches the disk before it is acknowledged.
    Full,
    /// Survives a process crash; a power loss may drop the newest commits.
    Normal,
}

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Full => Durability::Full,
            DurabilityArg::Normal => Durability::Normal,
        }
    }
}

/// `weft migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `weft apikey ...`.
#[derive(Subcommand, Debug)]
pub enum ApikeyCmd {
    /// Create a key and print it (once: only its hash is stored).
    Create {
        /// What the key may do
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A label for people
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Output format
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Revoke a key by id; it stops working within a second.
    Revoke {
        /// Key id (the part after `weft_`, as `weft apikey list` shows it).
        id: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// API key roles.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum RoleArg {
    /// Reads only.
    Viewer,
    /// Reads, and starts, cancels, retries and replays runs.
    Operator,
    /// Everything.
    Admin,
}

/// How client commands print data.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The server's JSON, for programs.
    Json,
}

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// URL of the weft server
    #[arg(long, env = "WEFT_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `weft flow ...`.
#[derive(Subcommand, Debug)]
pub enum FlowCmd {
    /// Apply flow files (YAML or JSON, by extension); unchanged documents keep their version.
    Apply {
        /// Flow files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List flows (latest version of each).
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show a flow document.
    Get {
        /// Flow name.
        name: String,
        /// Version [default: latest]
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List every stored version of a flow.
    Versions {
        /// Flow name.
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show what changed between two versions: nodes added, removed and changed.
    Diff {
        /// Flow name.
        name: String,
        /// The older version
        #[arg(long)]
        from: u32,
        /// The newer version [default: latest]
        #[arg(long)]
        to: Option<u32>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a flow (every version); refused while a run of it is queued or running.
    Delete {
        /// Flow name.
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `weft run ...`: subcommands, or `FILE --local`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub struct RunArgs {
    #[command(subcommand)]
    pub command: Option<RunCmd>,
    #[command(flatten)]
    pub local: LocalArgs,
}

/// `weft run FILE --local`.
#[derive(Args, Debug)]
pub struct LocalArgs {
    /// Flow file to run in this process (needs --local)
    #[arg(value_name = "FILE", requires = "local")]
    pub file: Option<PathBuf>,
    /// Run FILE on an in-process engine over a temporary store and print the finished run
    #[arg(long, requires = "file")]
    pub local: bool,
    #[command(flatten)]
    pub input: InputArgs,
    /// Keep the store in DIR instead of a temporary directory
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A run's input.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Run input as JSON text [default: {}]
    #[arg(long, value_name = "JSON", conflicts_with = "input_file")]
    pub input: Option<String>,
    /// Read the run input from a JSON file
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
}

/// `weft run <subcommand>`.
#[derive(Subcommand, Debug)]
pub enum RunCmd {
    /// Start a run of a flow.
    Start {
        /// Flow name.
        flow: String,
        #[command(flatten)]
        input: InputArgs,
        /// Flow version [default: latest]
        #[arg(long)]
        version: Option<u32>,
        /// Starting again with the same key returns the first run instead of a new one
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        /// Wait until the run finishes and print it; exit 1 unless it succeeded
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show a run node by node.
    Get {
        /// Run id.
        id: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List runs, newest first.
    List {
        /// Only runs of this flow
        #[arg(long)]
        flow: Option<String>,
        /// Only runs in this state
        #[arg(long, value_parser = run_states())]
        state: Option<String>,
        /// At most this many runs [default: the server's]
        #[arg(long)]
        limit: Option<u32>,
        /// Only runs older than this run id (the `next` cursor of a previous page)
        #[arg(long, value_name = "ID")]
        before: Option<String>,
        /// Only runs created at or after this RFC 3339 time
        #[arg(long, value_name = "TIME")]
        created_after: Option<String>,
        /// Only runs created before this RFC 3339 time
        #[arg(long, value_name = "TIME")]
        created_before: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Cancel runs; their running attempts are told to stop. Several ids go in one request.
    Cancel {
        /// Run ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Retry a failed run: every dead node gets fresh attempts and the run resumes.
    Retry {
        /// Run id.
        id: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show each node of a run with its attempt history.
    Tasks {
        /// Run id.
        id: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Start many runs in one request (at most 1000): FILE holds a JSON array of
    /// `{"flow", "input"?, "version"?, "idempotency_key"?}`, or one such object per line.
    StartBatch {
        /// JSON or JSON Lines file (`-` for stdin).
        file: PathBuf,
        #[command(flatten)]
        client: ClientOpts,
    },
}

fn run_states() -> PossibleValuesParser {
    PossibleValuesParser::new(RunState::ALL.iter().map(|s| s.as_str()))
}

/// `weft dlq ...`.
#[derive(Subcommand, Debug)]
pub enum DlqCmd {
    /// List dead-lettered tasks, most recent first.
    List {
        /// Only tasks of this flow
        #[arg(long)]
        flow: Option<String>,
        /// Only tasks of this node
        #[arg(long)]
        node: Option<String>,
        /// At most this many [default: the server's]
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Give dead tasks fresh attempts; their runs resume. Either RUN_ID NODE, or
    /// `--flow`/`--node` to replay every matching dead task (up to `--limit`, 1000).
    #[command(group(ArgGroup::new("which").required(true).multiple(true)))]
    Replay {
        /// Run id.
        #[arg(group = "which", requires = "node", conflicts_with_all = ["flow", "by_node", "limit"])]
        run_id: Option<String>,
        /// Node name.
        node: Option<String>,
        /// Replay every dead task of this flow
        #[arg(long, group = "which")]
        flow: Option<String>,
        /// Replay every dead task of this node name
        #[arg(long = "node", id = "by_node", group = "which")]
        by_node: Option<String>,
        /// At most this many with --flow/--node [default: 1000]
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show one dead task with every attempt.
    Show {
        /// Run id.
        run_id: String,
        /// Node name.
        node: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Discard a dead task of a failed run: it becomes `cancelled`, the run stays failed.
    Discard {
        /// Run id.
        run_id: String,
        /// Node name.
        node: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `weft queue ...`.
#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// List queues with their live figures.
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Change a queue's concurrency or pause it, live and persistently.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)))]
    Set {
        /// Queue name.
        name: String,
        /// Attempts that may run at once (1 to 10000)
        #[arg(long, group = "change")]
        concurrency: Option<u32>,
        /// Stop starting new attempts
        #[arg(long, group = "change", conflicts_with = "resume")]
        pause: bool,
        /// Start attempts again
        #[arg(long, group = "change")]
        resume: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Pause a queue: no new attempts start; nothing is lost.
    Pause {
        /// Queue name.
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Resume a paused queue.
    Resume {
        /// Queue name.
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `weft nodes`.
#[derive(Args, Debug)]
pub struct NodesArgs {
    #[command(flatten)]
    pub client: ClientOpts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_a_subcommand_or_a_local_file() {
        let cli = Cli::try_parse_from(["weft", "run", "start", "f", "--wait"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run(RunArgs {
                command: Some(RunCmd::Start { wait: true, .. }),
                ..
            })
        ));
        let cli =
            Cli::try_parse_from(["weft", "run", "f.yaml", "--local", "--input", "{}"]).unwrap();
        let Command::Run(RunArgs {
            command: None,
            local,
        }) = cli.command
        else {
            panic!("expected the local form");
        };
        assert!(local.local);
        assert_eq!(local.file, Some(PathBuf::from("f.yaml")));
        assert!(Cli::try_parse_from(["weft", "run", "f.yaml"]).is_err());
    }

    #[test]
    fn dlq_replay_takes_a_task_or_a_filter() {
        let ok = |a: &[&str]| Cli::try_parse_from(a).is_ok();
        assert!(ok(&["weft", "dlq", "replay", "r", "n"]));
        assert!(ok(&["weft", "dlq", "replay", "--flow", "f"]));
        assert!(ok(&[
            "weft", "dlq", "replay", "--node", "n", "--limit", "5"
        ]));
        assert!(!ok(&["weft", "dlq", "replay"]));
        assert!(!ok(&["weft", "dlq", "replay", "r"]));
        assert!(!ok(&["weft", "dlq", "replay", "r", "n", "--flow", "f"]));
    }

    #[test]
    fn queue_set_needs_a_change_and_not_both_switches() {
        assert!(Cli::try_parse_from(["weft", "queue", "set", "q"]).is_err());
        assert!(Cli::try_parse_from(["weft", "queue", "set", "q", "--pause", "--resume"]).is_err());
        assert!(Cli::try_parse_from(["weft", "queue", "set", "q", "--pause"]).is_ok());
    }
}
