//! `weft schedule ...` arguments.

use super::ClientOpts;
use clap::Subcommand;
use std::path::PathBuf;

/// `weft schedule ...`.
#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Create or replace schedules from YAML or JSON files (*.yaml, *.yml, *.json).
    Apply {
        /// Schedule documents (see docs/schedules.md).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List schedules with their next fire time.
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show a schedule and its next fire times.
    Get {
        /// Schedule name.
        name: String,
        /// How many upcoming fire times to list (0 to 100)
        #[arg(long, default_value_t = 5)]
        next: usize,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a schedule; its runs stay.
    Delete {
        /// Schedule name.
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Pause a schedule: no tick fires until it is resumed.
    Pause {
        /// Schedule name.
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Resume a schedule from its first tick after now (ticks missed while paused never fire).
    Resume {
        /// Schedule name.
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Start a run of a schedule now, paused or not.
    Trigger {
        /// Schedule name.
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}
