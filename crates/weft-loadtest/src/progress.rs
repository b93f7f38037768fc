//! The live progress line on stderr: elapsed time, phase, rate over the last second,
//! errors, drops and p99. On a terminal it rewrites one line; elsewhere (CI logs, pipes) it
//! prints a line every few seconds so logs stay readable.

use crate::generator::Shared;
use crate::scenario::Scenario;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing.
    Off,
    /// A line every 5 seconds.
    Line,
    /// One line on stderr, rewritten every second.
    Live,
}

impl Progress {
    /// `Live` when stderr is a terminal, else `Line`.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Live
        } else {
            Self::Line
        }
    }
}

/// Prints progress until the schedule is done.
pub(crate) async fn show(mode: Progress, shared: Arc<Shared>, scenario: Arc<Scenario>) {
    if mode == Progress::Off {
        return;
    }
    let every = if mode == Progress::Live {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let total = scenario.total_duration().as_secs();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if shared.done.load(Ordering::SeqCst) {
            break;
        }
        let now = shared.start.elapsed();
        let mut live = shared.recorder.lock().live(now);
        live.dropped += shared.dropped.load(Ordering::Relaxed);
        let phase = phase_at(&scenario, now);
        let line = format!(
            "{:>4}s/{total}s  {phase:<10} {:>7} req/s  sent {}  errors {} ({:.2}%)  dropped {}  p99 {:.1} ms",
            now.as_secs(),
            live.last_second_rps,
            live.sent,
            live.errors,
            if live.sent == 0 {
                0.0
            } else {
                100.0 * live.errors as f64 / live.sent as f64
            },
            live.dropped,
            live.last_second_p99_ms,
        );
        let mut err = std::io::stderr().lock();
        let _ = if mode == Progress::Live {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if mode == Progress::Live {
        eprintln!();
    }
}

fn phase_at(s: &Scenario, t: Duration) -> &str {
    let mut end = Duration::ZERO;
    for p in &s.phases {
        end += p.duration;
        if t < end {
            return &p.name;
        }
    }
    "finishing"
}
