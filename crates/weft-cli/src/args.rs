//! The command line, declared with clap's derive API. Only shapes live here; each command's
//! behaviour is in its own module.

use crate::bench;
use crate::config::{self, Config, DatabaseUrl, Overrides};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use weft_store_sqlite::Durability;

mod client;
mod limit;
mod schedule;

pub use client::*;
pub use limit::LimitCmd;
pub use schedule::ScheduleCmd;

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
    /// Run one part of a weft cluster (gateway, orchestrator, worker) on a PostgreSQL
    /// database shared with other `weft serve` processes, until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Apply and read flows on a server.
    #[command(subcommand)]
    Flow(FlowCmd),
    /// Start, read, list and cancel runs on a server; or run a flow file in-process with
    /// `weft run FILE --local`.
    Run(RunArgs),
    /// Read, replay and discard dead-lettered tasks on a server.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// Read and change queues on a server.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Read and change per-key concurrency limits on a server.
    #[command(subcommand)]
    Limit(LimitCmd),
    /// Apply, read, pause, resume, trigger and delete cron schedules on a server.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// List the node types a flow may use.
    Nodes(NodesArgs),
    /// List the worker processes with their queues and load.
    Workers(NodesArgs),
    /// List the circuit breakers (state, failures, next probe) and adaptive timeouts of the
    /// targets the answering process has called; each process has its own.
    Breakers(NodesArgs),
    /// Print the server's OpenAPI document (JSON).
    Openapi(NodesArgs),
    /// Create or migrate the database and print its schema version.
    Migrate(MigrateArgs),
    /// Create, list and revoke API keys (on the data directory; no server needed).
    #[command(subcommand)]
    Apikey(ApikeyCmd),
    /// Measure throughput and latency.
    Bench(bench::BenchArgs),
    /// Load-test a weft gateway with an open-loop scenario (steps, rate phases, SLOs); writes
    /// JSON and HTML reports, saves and compares baselines.
    Loadtest(crate::loadtest::LoadtestArgs),
    /// Check a running deployment and score it: nodes ready, queues served, pools within
    /// max_connections, a leader, clocks; then a short load test and, with --faults, a
    /// fault drill. Exits 1 when a check fails, 2 when the target cannot be reached or an
    /// option is invalid.
    Validate(crate::validate::ValidateArgs),
}

/// Where the config comes from; shared by `up` and `migrate`.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// TOML config file [env: WEFT_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the SQLite database [default: ./weft-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use the PostgreSQL database at this postgres:// URL instead of SQLite in the data
    /// directory [env: WEFT_DATABASE_URL]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<DatabaseUrl>,
    /// How long to retry while PostgreSQL cannot be reached, e.g. 30s [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_wait: Option<Duration>,
}

impl ConfigArgs {
    /// The values given as flags.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.as_ref().map(|u| u.as_str().to_string()),
            connect_wait: self.connect_wait,
            ..Overrides::default()
        }
    }

    /// Reads the config: the file (`--config` or `WEFT_CONFIG`), `WEFT_*` and these flags.
    pub fn load(&self) -> anyhow::Result<Config> {
        let env = config::process_env();
        let file = config::config_path(self.config.as_deref(), &env);
        Config::load(file.as_deref(), &env, &self.overrides())
    }
}

/// A duration flag such as `30s` or `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    weft_core::duration::parse(text)
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

/// `weft serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Roles of this process, comma-separated or repeated: gateway (the API), orchestrator
    /// (leader election: timers, lost-claim recovery), worker (runs tasks)
    #[arg(long = "role", value_enum, value_delimiter = ',', required = true)]
    pub roles: Vec<ServeRole>,
    /// Address the HTTP server listens on (the whole API for a gateway; /health, /ready,
    /// /metrics and /v1/cluster otherwise) [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory of flow files applied at start (gateway only)
    #[arg(long, value_name = "DIR")]
    pub flows: Option<PathBuf>,
    /// This process's name in leases, unique per process [env: WEFT_NODE_ID]
    /// [default: <hostname>-<pid>]
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// Queues a worker claims from, comma-separated [default: all]
    #[arg(long, value_name = "QUEUES", value_delimiter = ',')]
    pub queues: Option<Vec<String>>,
    /// How long a worker's claim lasts without a heartbeat, e.g. 15s [default: 15s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lease: Option<Duration>,
    /// How long the leader's lease lasts without renewal, e.g. 5s [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub leader_ttl: Option<Duration>,
    /// Longest an idle worker waits before asking the database for work [default: 100ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub poll: Option<Duration>,
}

/// `weft serve --role` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeRole {
    /// Serves the API and applies flow files.
    Gateway,
    /// May be elected leader: fires timers and hands back expired claims.
    Orchestrator,
    /// Claims and runs tasks.
    Worker,
}

impl ServeArgs {
    /// The roles given.
    pub fn roles(&self) -> config::Roles {
        let has = |r| self.roles.contains(&r);
        config::Roles {
            gateway: has(ServeRole::Gateway),
            orchestrator: has(ServeRole::Orchestrator),
            worker: has(ServeRole::Worker),
        }
    }

    /// The values given as flags.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            flows_dir: self.flows.clone(),
            node_id: self.node_id.clone(),
            lease: self.lease,
            leader_ttl: self.leader_ttl,
            poll: self.poll,
            worker_queues: self.queues.as_ref().map(|q| {
                q.iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            ..self.config.overrides()
        }
    }
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
    fn serve_takes_roles_as_a_list_or_repeated() {
        let parse = |a: &[&str]| match Cli::try_parse_from(a).map(|c| c.command) {
            Ok(Command::Serve(s)) => Some(s.roles()),
            _ => None,
        };
        let all = config::Roles {
            gateway: true,
            orchestrator: true,
            worker: true,
        };
        assert_eq!(
            parse(&["weft", "serve", "--role", "gateway,orchestrator,worker"]),
            Some(all)
        );
        assert_eq!(
            parse(&[
                "weft",
                "serve",
                "--role",
                "worker",
                "--role",
                "gateway,orchestrator"
            ]),
            Some(all)
        );
        assert_eq!(
            parse(&["weft", "serve", "--role", "worker"]),
            Some(config::Roles {
                worker: true,
                ..Default::default()
            })
        );
        assert_eq!(parse(&["weft", "serve"]), None);
        assert_eq!(parse(&["weft", "serve", "--role", "janitor"]), None);
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
