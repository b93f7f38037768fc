//! WAL checkpoints on their own thread and connection. SQLite's automatic checkpoint runs
//! inside the committing connection, which would stall the writer (and every caller
//! waiting on its batch) for the length of a checkpoint; a passive checkpoint here copies
//! pages back to the database file while the writer keeps committing.

use crate::writer::Writer;
use rusqlite::Connection;
use std::path::PathBuf;
use std::time::Duration;

/// How often the WAL is checkpointed.
const INTERVAL: Duration = Duration::from_millis(500);
/// A WAL larger than this (in pages) is truncated once readers allow it.
const TRUNCATE_ABOVE_PAGES: i64 = 64 * 1024;

pub fn start(path: PathBuf, writer: Writer) {
    let spawned = std::thread::Builder::new().name("weft-sqlite-checkpoint".into()).spawn(move || {
        let conn = match Connection::open(&path) {
            Ok(c) => c,
            Err(e) => return tracing::error!(error = %e, "checkpointer cannot open the database; the WAL will grow"),
        };
        let _ = conn.busy_timeout(Duration::from_millis(100));
        while !writer.is_closed() {
            std::thread::sleep(INTERVAL);
            let r: rusqlite::Result<(i64, i64, i64)> =
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
            match r {
                Ok((_, log, done)) if log > TRUNCATE_ABOVE_PAGES && log == done => {
                    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "checkpoint skipped"),
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the checkpoint thread; the WAL will grow");
    }
}
