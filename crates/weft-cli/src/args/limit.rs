//! `weft limit ...`: per-key concurrency limits on a server.

use super::ClientOpts;
use clap::Subcommand;

/// `weft limit ...`.
#[derive(Subcommand, Debug)]
pub enum LimitCmd {
    /// List the concurrency keys in use (running and waiting tasks) and every key with a
    /// run-time limit.
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Set a concurrency key's limit, live and persistently; it overrides the flows' limit.
    Set {
        /// The rendered key, e.g. `customer:42`.
        key: String,
        /// Attempts with this key that may run at once (1 to 100000)
        #[arg(long, allow_negative_numbers = true)]
        concurrency: i64,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Remove a key's run-time limit: the flows' limit applies again.
    Clear {
        /// The rendered key.
        key: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}
