//! Shapes of the client commands, which talk to a running server.

use super::{ClientOpts, InputArgs};
use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Subcommand};
use std::path::PathBuf;
use weft_core::RunState;

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
        /// Start no earlier than this RFC 3339 time (the run is queued until then)
        #[arg(long, value_name = "TIME", conflicts_with = "delay")]
        at: Option<String>,
        /// Start after this long, e.g. 90s, 10m, 2h
        #[arg(long, value_name = "DURATION")]
        delay: Option<String>,
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
    /// Say in plain words why a run is not progressing (or that it is, or how it ended).
    Explain {
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
    /// List dead-lettered tasks, most recent first, one page at a time.
    #[command(group(ArgGroup::new("which").multiple(true)))]
    List {
        #[command(flatten)]
        select: DlqSelection,
        /// At most this many [default: the server's]
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page (the cursor it printed)
        #[arg(long)]
        before: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Give dead tasks fresh attempts; their runs resume. Either RUN_ID NODE, or a
    /// selection (`--flow`, `--node`, `--error`, `--since`, `--until`) to replay every
    /// matching dead task, a page of 1,000 at a time with progress on stderr.
    #[command(group(ArgGroup::new("which").required(true).multiple(true)))]
    Replay {
        /// Run id.
        #[arg(group = "which", requires = "node", conflicts_with_all = SELECTION)]
        run_id: Option<String>,
        /// Node name.
        node: Option<String>,
        #[command(flatten)]
        select: DlqSelection,
        /// With a selection: at most this many [default: every match]
        #[arg(long)]
        limit: Option<u64>,
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
    /// Discard dead tasks of failed runs: each becomes `cancelled`, its run stays failed.
    /// Either RUN_ID NODE, or a selection as for `replay`.
    #[command(group(ArgGroup::new("which").required(true).multiple(true)))]
    Discard {
        /// Run id.
        #[arg(group = "which", requires = "node", conflicts_with_all = SELECTION)]
        run_id: Option<String>,
        /// Node name.
        node: Option<String>,
        #[command(flatten)]
        select: DlqSelection,
        /// With a selection: at most this many [default: every match]
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// The ids of [`DlqSelection`]'s arguments.
const SELECTION: [&str; 6] = ["flow", "by_node", "error", "since", "until", "limit"];

/// Which dead tasks a `weft dlq` command lists or acts on.
#[derive(Args, Debug, Clone)]
pub struct DlqSelection {
    /// Only dead tasks of this flow
    #[arg(long, group = "which")]
    pub flow: Option<String>,
    /// Only dead tasks of this node name
    #[arg(long = "node", id = "by_node", value_name = "NODE", group = "which")]
    pub by_node: Option<String>,
    /// Only dead tasks whose last error contains this text (case-insensitive)
    #[arg(long, group = "which")]
    pub error: Option<String>,
    /// Only tasks dead-lettered at or after this time: RFC 3339, or an age such as 2h
    #[arg(long, group = "which")]
    pub since: Option<String>,
    /// Only tasks dead-lettered before this time: RFC 3339, or an age such as 30m
    #[arg(long, group = "which")]
    pub until: Option<String>,
}

/// `weft queue ...`.
#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// List queues with their live figures.
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Change a queue's concurrency, rate limit or pause switch, live and persistently.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)))]
    Set {
        /// Queue name.
        name: String,
        /// Attempts that may run at once (1 to 10000)
        #[arg(long, group = "change")]
        concurrency: Option<u32>,
        /// At most LIMIT starts per PER for the queue's tasks, across every worker and on
        /// top of their nodes' limits, spaced PER/LIMIT apart, e.g. 10/1s or 100/1m
        #[arg(long, group = "change", value_name = "LIMIT/PER", allow_hyphen_values = true,
              value_parser = parse_rate, conflicts_with = "no_rate")]
        rate: Option<RateArg>,
        /// Remove the queue's rate limit
        #[arg(long, group = "change")]
        no_rate: bool,
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

/// `--rate LIMIT/PER` as given (the config file's `[queue_rates]` entry and
/// `WEFT_QUEUE_RATES__NAME` read the same form); the server checks the values and names
/// what is wrong.
pub use crate::config::queue_rates::{QueueRateConfig as RateArg, parse as parse_rate};

/// `weft nodes`.
#[derive(Args, Debug)]
pub struct NodesArgs {
    #[command(flatten)]
    pub client: ClientOpts,
}
