//! Wake-ups across processes: PostgreSQL LISTEN/NOTIFY on one channel per schema.
//!
//! Without them a worker learns of ready tasks that another process wrote only at its next
//! poll. They are a hint, never the truth: claims always read the tables, so a lost
//! notification costs at most one poll interval. That is why sending stays out of the
//! write transactions (a NOTIFY inside a transaction takes a database-wide lock at commit
//! and serialises committers): the engine announces after its commit, and a background
//! task here sends at most one notification per queue per [`DEBOUNCE`], on a pooled
//! connection. Receiving takes one dedicated connection per store (a pooled one is shared
//! and recycled) that LISTENs, and reconnects with back-off when it drops.

use crate::conv;
use deadpool_postgres::Pool;
use parking_lot::Mutex;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast, watch};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Socket};

/// Shortest time between two notifications for one queue: announcements made meanwhile
/// are coalesced into the next one.
pub const DEBOUNCE: Duration = Duration::from_millis(5);
/// First wait before listening again after the connection dropped; doubled per failure.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between attempts to listen again.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Announcements a slow receiver may leave unread before it is told it lagged.
const CAPACITY: usize = 1024;

/// The channel for `schema`: stores on other schemas of the same database do not hear it.
/// A hash keeps it a short plain identifier (channel names are at most 63 bytes), and
/// FNV-1a rather than std's hasher so that every weft build agrees on it.
pub(crate) fn channel(schema: &str) -> String {
    let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("weft_ready_{hash:016x}")
}

/// A store's sender and listener. Both background tasks start on first use and end when
/// the store is closed or dropped.
pub(crate) struct Notifier {
    shared: Arc<Shared>,
    pool: Pool,
    /// For the dedicated LISTEN connection.
    listen_cfg: Config,
    sending: AtomicBool,
    listening: AtomicBool,
    /// True (or dropped with the store) stops both tasks.
    stop: watch::Sender<bool>,
}

struct Shared {
    channel: String,
    /// Queues announced since the last notification, in announcement order.
    pending: Mutex<Vec<Arc<str>>>,
    pending_added: Notify,
    received: broadcast::Sender<Arc<str>>,
}

impl Notifier {
    pub fn new(schema: &str, pool: Pool, mut listen_cfg: Config) -> Self {
        let app = listen_cfg.get_application_name().unwrap_or("weft");
        listen_cfg.application_name(format!("{app}-listen"));
        // A LISTEN connection only reads, so a server that vanished without closing it
        // would go unnoticed; keepalives bound that to about a minute.
        listen_cfg
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        Self {
            shared: Arc::new(Shared {
                channel: channel(schema),
                pending: Mutex::new(Vec::new()),
                pending_added: Notify::new(),
                received: broadcast::channel(CAPACITY).0,
            }),
            pool,
            listen_cfg,
            sending: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            stop: watch::channel(false).0,
        }
    }

    pub fn channel(&self) -> &str {
        &self.shared.channel
    }

    /// Queues `queues` for the next notification; never waits.
    pub fn announce(&self, queues: &[&str]) {
        if queues.is_empty() || *self.stop.borrow() {
            return;
        }
        {
            let mut pending = self.shared.pending.lock();
            for q in queues {
                if !pending.iter().any(|p| &**p == *q) {
                    pending.push(Arc::from(*q));
                }
            }
        }
        let task = || {
            send_loop(
                self.shared.clone(),
                self.pool.clone(),
                self.stop.subscribe(),
            )
        };
        if start_once(&self.sending, task) {
            self.shared.pending_added.notify_one();
        }
    }

    /// A receiver of every announcement on the channel; `None` outside a Tokio runtime.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        if *self.stop.borrow() {
            return None;
        }
        // Subscribed before the listener starts, so this receiver gets its first "".
        let rx = self.shared.received.subscribe();
        let task = || {
            let cfg = self.listen_cfg.clone();
            listen_loop(self.shared.clone(), cfg, self.stop.subscribe())
        };
        start_once(&self.listening, task).then_some(rx)
    }

    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Spawns the task `task` makes unless `started` says it runs already; false when there is
/// no Tokio runtime to spawn it on.
fn start_once<F>(started: &AtomicBool, task: impl FnOnce() -> F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    if started.load(Ordering::Acquire) {
        return true;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    if started
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        runtime.spawn(task());
    }
    true
}

/// Resolves once the store is closed or dropped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sends what was announced, then rests for [`DEBOUNCE`] so a burst becomes one
/// notification per queue.
async fn send_loop(shared: Arc<Shared>, pool: Pool, mut stop: watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shared.pending_added.notified() => {}
            _ = stopped(&mut stop) => return,
        }
        let queues = std::mem::take(&mut *shared.pending.lock());
        if queues.is_empty() {
            continue;
        }
        match send(&pool, &shared.channel, &queues).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("ready announcements reach PostgreSQL again");
            }
            Ok(()) => {}
            // Dropped, not retried: by the time the database is back, polling has found
            // the tasks.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot send ready announcements; other processes fall back to polling");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(DEBOUNCE) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

async fn send(pool: &Pool, channel: &str, queues: &[Arc<str>]) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let stmt = client
        .prepare_cached("SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q")
        .await
        .map_err(|e| conv::describe(&e))?;
    let names: Vec<&str> = queues.iter().map(|q| &**q).collect();
    client
        .execute(&stmt, &[&channel, &names])
        .await
        .map_err(|e| conv::describe(&e))?;
    Ok(())
}

/// Keeps a LISTEN connection open and passes its notifications on. Each time it starts
/// listening it passes on "" (every queue): what was announced before is lost to it.
async fn listen_loop(shared: Arc<Shared>, cfg: Config, mut stop: watch::Receiver<bool>) {
    let mut retry = RETRY_MIN;
    let mut down_since: Option<Instant> = None;
    loop {
        let listening = tokio::select! {
            r = listen(&cfg, &shared.channel) => r,
            _ = stopped(&mut stop) => return,
        };
        let why = match listening {
            Ok((client, conn)) => {
                if let Some(since) = down_since.take() {
                    tracing::info!(channel = %shared.channel, down_ms = since.elapsed().as_millis() as u64, "listening for ready announcements again");
                }
                retry = RETRY_MIN;
                let _ = shared.received.send(Arc::from(""));
                let why = tokio::select! {
                    why = forward(conn, &shared.received) => why,
                    _ = stopped(&mut stop) => return,
                };
                drop(client);
                why
            }
            Err(why) => why,
        };
        if down_since.is_none() {
            down_since = Some(Instant::now());
            tracing::warn!(channel = %shared.channel, error = %why, "not listening for ready announcements; workers poll until it is back");
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stopped(&mut stop) => return,
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

type PgConnection = Connection<Socket, NoTlsStream>;

/// Connects and LISTENs. The connection has to be polled for the LISTEN to complete.
async fn listen(cfg: &Config, channel: &str) -> Result<(Client, PgConnection), String> {
    let (client, mut conn) = cfg.connect(NoTls).await.map_err(|e| conv::describe(&e))?;
    {
        let sql = format!("LISTEN {channel}");
        let listen = client.batch_execute(&sql);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                r = &mut listen => break r.map_err(|e| conv::describe(&e))?,
                m = poll_fn(|cx| conn.poll_message(cx)) => match m {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(conv::describe(&e)),
                    None => return Err("the server closed the connection".into()),
                },
            }
        }
    }
    Ok((client, conn))
}

/// Passes notifications on until the connection ends; returns why it ended.
async fn forward(mut conn: PgConnection, to: &broadcast::Sender<Arc<str>>) -> String {
    loop {
        match poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                let _ = to.send(Arc::from(n.payload()));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return conv::describe(&e),
            None => return "the server closed the connection".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::channel;

    #[test]
    fn channels_are_short_identifiers_that_differ_per_schema() {
        let a = channel("public");
        assert_eq!(a, channel("public"), "stable");
        assert_ne!(a, channel("weft_t_1"));
        let long = channel(&"s".repeat(63));
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }
}
