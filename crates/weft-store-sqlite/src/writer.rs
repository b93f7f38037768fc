//! The single writer thread. It owns the only write connection and commits every operation
//! queued since its last commit in one transaction (group commit), so the cost of a durable
//! commit is shared by everything that arrived while the previous one was being written.
//!
//! Batches are all or nothing. An operation may refuse on its own (not found, conflict)
//! before it writes anything; that error goes to its caller alone. A SQLite error, though,
//! can strike after an operation wrote part of its changes, so it rolls back the whole
//! batch and every caller in it gets the error: nothing is acknowledged that was not
//! committed, and nothing is committed half-applied. Replies are sent only after the
//! commit, so no caller acts on a write that could still be lost.

use crate::conv::{classify, take_failed};
use crate::ops::W;
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};
use weft_store::{StoreError, StoreResult};

/// Most operations folded into one transaction.
pub const MAX_BATCH: usize = 4096;
/// A batch slower than this is logged: every caller in it waited that long.
const SLOW_BATCH: std::time::Duration = std::time::Duration::from_millis(50);

type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Op = Box<dyn FnOnce(&mut W) -> Done + Send>;

/// Handle used to queue operations for the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
    closed: Arc<AtomicBool>,
    /// Batches committed so far.
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer thread over `conn`; `closed` is shared with the store's readers.
    pub fn start(
        conn: Connection,
        closed: Arc<AtomicBool>,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Op>(MAX_BATCH * 4);
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let handle = std::thread::Builder::new()
            .name("weft-sqlite-writer".into())
            .spawn(move || run(W::new(conn), rx, &counted))
            .expect("spawn writer thread");
        (
            Writer {
                tx,
                closed,
                commits,
            },
            handle,
        )
    }

    /// Runs `f` in the next batch and returns its result once that batch has committed.
    pub async fn exec<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut W) -> StoreResult<T> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (reply, rx) = oneshot::channel();
        let op: Op = Box::new(move |w: &mut W| {
            let result = f(w);
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = reply.send(commit.and(result));
            })
        });
        self.tx.send(op).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `f` for the next batch without waiting for it (from a plain thread); false
    /// when the queue is full or the writer has stopped, and `f` was dropped.
    pub fn submit(&self, f: impl FnOnce(&mut W) + Send + 'static) -> bool {
        let op: Op = Box::new(move |w: &mut W| {
            f(w);
            Box::new(|_| {})
        });
        !self.closed.load(Ordering::Acquire) && self.tx.try_send(op).is_ok()
    }

    /// How many batches the writer has committed so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    /// True once the writer thread has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Refuses new operations; the thread commits what is already queued and exits.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let stop: Op = Box::new(|w: &mut W| {
            w.stop = true;
            Box::new(|_| {})
        });
        let _ = self.tx.try_send(stop);
    }
}

fn run(mut w: W, mut rx: mpsc::Receiver<Op>, commits: &AtomicU64) {
    let mut dones: Vec<Done> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let started = std::time::Instant::now();
        take_failed();
        if let Err(e) = w.conn.execute_batch("BEGIN IMMEDIATE").map_err(classify) {
            take_failed();
            first(&mut w)(Err(e.clone()));
            while let Ok(op) = rx.try_recv() {
                op(&mut w)(Err(e.clone()));
            }
            continue;
        }
        let begun = started.elapsed();
        let mut failed = false;
        dones.push(first(&mut w));
        failed |= take_failed();
        while dones.len() < MAX_BATCH && !failed {
            match rx.try_recv() {
                Ok(op) => {
                    dones.push(op(&mut w));
                    failed |= take_failed();
                }
                Err(_) => break,
            }
        }
        let applied = started.elapsed();
        let outcome = if failed {
            Err(StoreError::Unavailable(
                "a storage error rolled back this batch; nothing in it was applied".into(),
            ))
        } else {
            w.conn.execute_batch("COMMIT").map_err(classify)
        };
        commits.fetch_add(1, Ordering::AcqRel);
        let took = started.elapsed();
        if took > SLOW_BATCH {
            tracing::warn!(
                begin_ms = begun.as_millis() as u64,
                ops = dones.len(),
                apply_ms = applied.as_millis() as u64,
                total_ms = took.as_millis() as u64,
                "slow commit"
            );
        }
        if let Err(e) = &outcome {
            tracing::error!(error = %e, ops = dones.len(), "batch rolled back");
            let _ = w.conn.execute_batch("ROLLBACK");
            take_failed();
            w.forget_cache();
        }
        for done in dones.drain(..) {
            done(outcome.clone());
        }
        if w.stop {
            break;
        }
    }
    tracing::debug!("sqlite writer stopped");
}
