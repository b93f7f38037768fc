//! The single writer thread. It owns the only write connection and commits every operation
//! queued since its last commit in one transaction (group commit), so the cost of a durable
//! commit is shared by everything that arrived while the previous one was being written.
//!
//! Each operation runs inside its own savepoint: one failing operation is rolled back alone
//! and reports its error, the rest of the batch still commits. Replies are sent only after
//! the commit, so a caller never acts on a write that could still be lost.

use crate::conv::classify;
use crate::ops::W;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use weft_store::{StoreError, StoreResult};

/// Most operations folded into one transaction.
pub const MAX_BATCH: usize = 4096;

type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Op = Box<dyn FnOnce(&mut W) -> Done + Send>;

/// Handle used to queue operations for the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    /// Starts the writer thread over `conn`.
    pub fn start(conn: Connection) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Op>(MAX_BATCH * 4);
        let handle = std::thread::Builder::new()
            .name("weft-sqlite-writer".into())
            .spawn(move || run(W::new(conn), rx))
            .expect("spawn writer thread");
        (Writer { tx }, handle)
    }

    /// Runs `f` in the next batch and returns its result once that batch has committed.
    pub async fn exec<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut W) -> StoreResult<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let op: Op = Box::new(move |w: &mut W| {
            let result = w.in_savepoint(f);
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = reply.send(commit.and(result));
            })
        });
        self.tx.send(op).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Closes the queue; the thread commits what it has and exits.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

fn run(mut w: W, mut rx: mpsc::Receiver<Op>) {
    let mut dones: Vec<Done> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let begun = w.conn.execute_batch("BEGIN IMMEDIATE").map_err(classify);
        if let Err(e) = begun {
            first(&mut w)(Err(e.clone()));
            while let Ok(op) = rx.try_recv() {
                op(&mut w)(Err(e.clone()));
            }
            continue;
        }
        dones.push(first(&mut w));
        while dones.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => dones.push(op(&mut w)),
                Err(_) => break,
            }
        }
        let committed = w.conn.execute_batch("COMMIT").map_err(classify);
        if let Err(e) = &committed {
            tracing::error!(error = %e, ops = dones.len(), "commit failed; the batch was rolled back");
            let _ = w.conn.execute_batch("ROLLBACK");
            w.forget_cache();
        }
        for done in dones.drain(..) {
            done(committed.clone());
        }
    }
    tracing::debug!("sqlite writer stopped");
}
