//! Helpers shared by the binary's integration tests: start the real `weft up` on a free
//! port and its own data directory, wait for it with deadlines, run client commands.
//! `cluster` starts `weft serve` processes on a fresh PostgreSQL schema.

#![allow(dead_code)]

pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// How long a server may take to answer /health.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A command for the binary with no inherited `WEFT_*` variables, so tests are hermetic.
pub fn weft_command() -> Command {
    let mut cmd = Command::new(WEFT);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WEFT_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs a client command to completion.
pub async fn weft(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::from(weft_command());
    cmd.args(args).stdin(Stdio::null());
    cmd.output().await.expect("weft runs")
}

/// stdout and stderr as text, for assertions and failure messages.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    out
}

/// A running `weft up`.
pub struct Server {
    child: Child,
    /// Base URL.
    pub url: String,
    /// Its stderr, captured to a file (a pipe nobody reads could fill and block it).
    pub log: PathBuf,
}

impl Server {
    /// Starts `weft up` on `data_dir` and a free port with `extra` arguments, and waits
    /// until it answers /health.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, extra, &[]).await
    }

    /// [`Server::start`] with environment variables.
    pub async fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args: Vec<&str> = vec!["up", "--data-dir", data_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let log = |port: u16| data_dir.with_extension(format!("{port}.log"));
        let mut server = Self::spawn(&args, env, log);
        server.wait_healthy().await;
        server
    }

    /// Starts the binary with `args`, `--listen` on a free port and `env`, its stderr going
    /// to `log(port)`; does not wait for it.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], log: impl FnOnce(u16) -> PathBuf) -> Server {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let log = log(port);
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = weft_command();
        cmd.args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = cmd.spawn().expect("weft starts");
        Server { child, url, log }
    }

    /// Waits until the process answers /health.
    pub async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("weft exited early with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "weft not healthy after {START_DEADLINE:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "weft still running {deadline:?} after being told to stop:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        self.kill_now();
    }

    /// SIGKILL, keeping the value (and its log) around.
    pub fn kill_now(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it returns `Some`, failing with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
