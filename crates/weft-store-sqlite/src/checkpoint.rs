//! WAL checkpoints on their own thread and connection. SQLite's automatic checkpoint runs
//! inside the committing connection, which would stall the writer (and every caller
//! waiting on its batch) for the length of a checkpoint; a passive checkpoint here copies
//! pages back to the database file while the writer keeps committing. Modes that block
//! writers (FULL, RESTART, TRUNCATE) are never used: they stall every commit behind them.

use crate::writer::Writer;
use rusqlite::Connection;
use std::path::PathBuf;
use std::time::Duration;

/// How often the WAL is checkpointed.
const INTERVAL: Duration = Duration::from_secs(1);

pub fn start(path: PathBuf, writer: Writer) {
    let spawned = std::thread::Builder::new().name("weft-sqlite-checkpoint".into()).spawn(move || {
        let conn = match Connection::open(&path) {
            Ok(c) => c,
            Err(e) => return tracing::error!(error = %e, "checkpointer cannot open the database; the WAL will grow"),
        };
        let _ = conn.busy_timeout(Duration::from_millis(100));
        while !writer.is_closed() {
            std::thread::sleep(INTERVAL);
            // PASSIVE never blocks the writer. Once a checkpoint has copied the whole WAL,
            // the writer's next transaction starts the WAL over, and `journal_size_limit = 0`
            // (set on the writer) truncates it then. Reusing the old file instead would make
            // every frame write a read-modify-write of a page the kernel may have evicted:
            // traced at up to 46 ms for one 24-byte header write on this kind of machine.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "checkpoint skipped");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the checkpoint thread; the WAL will grow");
    }
}
