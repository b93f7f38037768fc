//! `weft serve` processes losing their database under load and getting it back: `/ready`
//! must say not-ready during the outage and ready after it, and every run accepted before
//! it must still succeed. Two kinds of outage:
//!
//! - a TCP proxy inside the test, between the processes and the test PostgreSQL, is cut:
//!   every connection closes and new ones are refused, without touching a server other
//!   tests share;
//! - a throw-away PostgreSQL cluster that the test creates (`initdb`, `pg_ctl`, as
//!   `scripts/ensure-postgres.sh` does; run as the `postgres` user when the test runs as
//!   root) is stopped with `pg_ctl stop -m fast` and started again. It needs the PostgreSQL
//!   server binaries (on `PATH` or in `/usr/lib/postgresql/*/bin`).

mod common;

use common::cluster::{Cluster, all_logs, apply_flow, ready_status, start_run, wait_finished};
use common::{Server, eventually};
use reqwest::StatusCode;
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy to `target` on a fixed local port that can be cut and restored.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let port = common::free_port();
        let (up, rx) = watch::channel(true);
        tokio::spawn(serve(port, target, rx));
        let proxy = Proxy { port, up };
        eventually(Duration::from_secs(10), "the proxy to listen", || async {
            TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
        })
        .await;
        proxy
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// Listens while the switch is up; when it goes down, stops listening and ends every
/// forwarded connection.
async fn serve(port: u16, target: SocketAddr, mut up: watch::Receiver<bool>) {
    loop {
        if up.wait_for(|u| *u).await.is_err() {
            return;
        }
        // The port was ours a moment ago; binding again can take a few tries.
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let mut down = up.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((conn, _)) = accepted else { continue };
                    tokio::spawn(forward(conn, target, up.clone()));
                }
                changed = down.wait_for(|u| !*u) => {
                    if changed.is_err() { return; }
                    break;
                }
            }
        }
    }
}

async fn forward(mut conn: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut conn, &mut server) => {}
        _ = up.wait_for(|u| !*u) => {}
    }
}

/// The test database's address, and its URL with the proxy's port instead.
fn through_proxy(port: u16) -> (SocketAddr, String) {
    let url = weft_store_postgres::testing::url();
    let mut parsed = reqwest::Url::parse(&url).expect("WEFT_TEST_DATABASE_URL is a URL");
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
    let host = if host == "localhost" {
        "127.0.0.1".into()
    } else {
        host
    };
    let target: SocketAddr = format!("{host}:{}", parsed.port().unwrap_or(5432))
        .parse()
        .expect("the test database is at IP:PORT");
    parsed.set_host(Some("127.0.0.1")).unwrap();
    parsed.set_port(Some(port)).unwrap();
    (target, parsed.to_string())
}

/// Applies `pause` (a delay of `wait`, then a noop) through `gateway` and starts `n` runs
/// of it; their ids. The delays keep the runs live across the outage that follows.
async fn start_pauses(gateway: &common::Server, wait: &str, n: usize) -> Vec<String> {
    apply_flow(
        gateway,
        &format!(
            "name: pause\nnodes:\n  wait: {{type: delay, params: {{duration: {wait}}}}}\n  then: {{type: noop, needs: [wait]}}\n"
        ),
    )
    .await;
    let mut accepted = Vec::new();
    for i in 0..n {
        accepted.push(start_run(gateway, "pause", json!({"i": i})).await);
    }
    accepted
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_makes_processes_unready_and_loses_no_accepted_run() {
    let probe = common::free_port();
    let (target, _) = through_proxy(probe);
    let proxy = Proxy::start(target).await;
    let (_, url) = through_proxy(proxy.port);
    let cluster = Cluster::on(&url);
    let fast = ["--lease", "2s", "--leader-ttl", "2s", "--poll", "50ms"];
    let gateway = cluster.start("gw", "gateway", &fast).await;
    let node = cluster.start("node", "orchestrator,worker", &fast).await;
    let logs = || all_logs(&[&gateway, &node]);
    for n in [&gateway, &node] {
        assert_eq!(ready_status(n).await, Some(StatusCode::OK), "{}", logs());
    }

    let accepted = start_pauses(&gateway, "1s", 20).await;

    proxy.cut();
    // The outage reaches the running loops: heartbeats and the leader's renewals fail.
    eventually(Duration::from_secs(20), "heartbeats to fail", || async {
        let log = node.log_text();
        (log.contains("heartbeat failed")
            && log.contains("cannot reach the store to hold or seek the leader lease"))
        .then_some(())
    })
    .await;
    all_ready_status(
        &[&gateway, &node],
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready",
        20,
    )
    .await;
    for n in [&gateway, &node] {
        // The process itself is alive and says so.
        let health = reqwest::get(format!("{}/health", n.url)).await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
    // Starting a run now is refused rather than lost.
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/runs", gateway.url))
        .json(&json!({"flow": "pause", "input": {}}))
        .send()
        .await
        .unwrap();
    assert!(
        refused.status().is_server_error(),
        "a start without a database: {}",
        refused.status()
    );

    proxy.restore();
    recovers(&gateway, &node, &accepted).await;
}

/// A PostgreSQL cluster of this test's own, in a temporary directory on a free port.
struct Throwaway {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Vec<String>,
    port: u16,
}

/// The directory holding `initdb` and `pg_ctl`.
fn pg_bindir() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pg_ctl"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let debian = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
            .collect();
        dirs.sort();
        dirs.pop()
    };
    on_path
        .filter(|d| d.join("initdb").is_file())
        .or_else(debian)
        .expect(
            "this test needs the PostgreSQL server binaries (initdb, pg_ctl): install postgresql",
        )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Throwaway {
    fn start() -> Throwaway {
        let dir = tempfile::tempdir().unwrap();
        let mut run_as = Vec::new();
        if is_root() {
            // initdb refuses to run as root.
            let owned = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(owned.success(), "chown postgres {}", dir.path().display());
            run_as = vec![
                "runuser".into(),
                "-u".into(),
                "postgres".into(),
                "--".into(),
            ];
        }
        let pg = Throwaway {
            dir,
            bin: pg_bindir(),
            run_as,
            port: common::free_port(),
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.server_start();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(self.bin.join(tool));
                c
            }
            None => Command::new(self.bin.join(tool)),
        };
        let out = cmd.args(args).output().expect("PostgreSQL tool runs");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    fn server_start(&self) {
        let log = self.dir.path().join("server.log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start",
            ],
        );
    }

    fn server_stop(&self, mode: &str) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", mode, "-w", "stop"]);
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let data = self.data();
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(self.bin.join("pg_ctl"));
                c
            }
            None => Command::new(self.bin.join("pg_ctl")),
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_and_started_under_load_loses_no_accepted_run() {
    let pg = tokio::task::spawn_blocking(Throwaway::start).await.unwrap();
    let cluster = Cluster::on(&pg.url());
    let fast = ["--lease", "2s", "--leader-ttl", "2s", "--poll", "50ms"];
    let gateway = cluster.start("gw", "gateway", &fast).await;
    let node = cluster.start("node", "orchestrator,worker", &fast).await;
    let accepted = start_pauses(&gateway, "2s", 30).await;

    let pg = tokio::task::spawn_blocking(move || {
        pg.server_stop("fast");
        pg
    })
    .await
    .unwrap();
    all_ready_status(
        &[&gateway, &node],
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready",
        20,
    )
    .await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.server_start();
        pg
    })
    .await
    .unwrap();
    recovers(&gateway, &node, &accepted).await;
    // The processes go before the server they use.
    drop((gateway, node));
    drop(pg);
}

/// Waits (up to `secs` for each) until `/ready` of every one of `nodes` answers `want`.
async fn all_ready_status(nodes: &[&Server], want: StatusCode, what: &str, secs: u64) {
    for n in nodes {
        eventually(
            Duration::from_secs(secs),
            &format!("/ready to say {what}"),
            || async { (ready_status(n).await? == want).then_some(()) },
        )
        .await;
    }
}

/// After an outage: both processes ready again, every accepted run succeeded, and new work
/// flows again.
async fn recovers(gateway: &Server, node: &Server, accepted: &[String]) {
    let logs = || all_logs(&[gateway, node]);
    all_ready_status(&[gateway, node], StatusCode::OK, "ready again", 30).await;
    let states = wait_finished(gateway, accepted, Duration::from_secs(60)).await;
    assert!(
        states.iter().all(|s| s == "succeeded"),
        "{states:?}\n{}",
        logs()
    );
    let after = start_run(gateway, "pause", json!({})).await;
    let states = wait_finished(gateway, &[after], Duration::from_secs(30)).await;
    assert_eq!(states, ["succeeded"], "{}", logs());
}
