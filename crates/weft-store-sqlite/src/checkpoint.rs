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
/// How soon a checkpoint is tried again when writes came in while it ran (see below).
const RETRY: Duration = Duration::from_millis(100);
/// Quick retries at most before waiting [`INTERVAL`] again.
const RETRIES: u32 = 5;
/// A WAL shorter than this many pages (4 MiB) is left to start over with the next write:
/// truncating it is cheap, and an idle database is not written to every second.
const RESTART_PAGES: i64 = 1024;

pub fn start(path: PathBuf, writer: Writer) {
    let spawned = std::thread::Builder::new().name("weft-sqlite-checkpoint".into()).spawn(move || {
        let conn = match Connection::open(&path) {
            Ok(c) => c,
            Err(e) => return tracing::error!(error = %e, "checkpointer cannot open the database; the WAL will grow"),
        };
        let _ = conn.busy_timeout(Duration::from_millis(100));
        let mut retries = 0;
        while !writer.is_closed() {
            std::thread::sleep(if retries > 0 { RETRY } else { INTERVAL });
            // PASSIVE never blocks the writer. Once a checkpoint has copied the whole WAL,
            // the next transaction that writes starts the WAL over, and `journal_size_limit
            // = 0` (set on the writer) truncates it at that transaction's commit. Reusing
            // the old file instead would make every frame write a read-modify-write of a
            // page the kernel may have evicted: traced at up to 46 ms for one 24-byte
            // header write on this kind of machine. The truncation costs milliseconds per
            // ten MB of WAL, so it is not left to whatever write comes next (at a burst of
            // schedule ticks, the burst's release would pay it): when nothing was committed
            // while the checkpoint ran, the writer is asked to start the WAL over at once.
            // When something was, the WAL is no longer all copied; the next try comes soon.
            // (A burst of 10,000 schedule ticks every second paid 5-60 ms at its release
            // for the truncation left to it; see `weft bench schedules`.)
            let before = writer.commits();
            let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            });
            match r {
                Err(e) => tracing::debug!(error = %e, "checkpoint skipped"),
                Ok((log, copied))
                    if log >= RESTART_PAGES && log == copied && writer.commits() == before =>
                {
                    writer.submit(|w| w.restart_wal());
                    retries = 0;
                    continue;
                }
                Ok((log, _)) if log >= RESTART_PAGES && retries < RETRIES => {
                    retries += 1;
                    continue;
                }
                Ok(_) => {}
            }
            retries = 0;
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the checkpoint thread; the WAL will grow");
    }
}
