//! `weft serve` processes for the cluster tests: each test gets a fresh PostgreSQL schema
//! (`weft_store_postgres::testing`, dropped with its guard) and starts real processes of the
//! built binary on it, each on a free port with its own log file.

use super::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weft_store_postgres::testing::{self, SchemaGuard};

/// How long a run may take to finish in these tests.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// A fresh schema (created by the first process's migration) and a directory for logs.
pub struct Cluster {
    pub guard: SchemaGuard,
    pub dir: tempfile::TempDir,
    /// The database URL processes are given.
    pub database_url: String,
    /// Extra `KEY=VALUE` environment every process gets.
    pub env: Vec<(String, String)>,
}

impl Cluster {
    /// A cluster on the test database (`WEFT_TEST_DATABASE_URL`).
    pub fn new() -> Cluster {
        Self::on(&testing::url())
    }

    /// A cluster on the database at `url`.
    pub fn on(url: &str) -> Cluster {
        Cluster {
            guard: SchemaGuard {
                schema: testing::schema_name(),
            },
            dir: tempfile::tempdir().unwrap(),
            database_url: url.to_string(),
            env: Vec::new(),
        }
    }

    /// Starts `weft serve --role ROLES --node-id NAME` with `extra` arguments and waits
    /// until it answers /health.
    pub async fn start(&self, name: &str, roles: &str, extra: &[&str]) -> Server {
        let mut node = self.spawn(name, roles, extra);
        node.wait_healthy().await;
        node
    }

    /// [`Cluster::start`] without waiting.
    pub fn spawn(&self, name: &str, roles: &str, extra: &[&str]) -> Server {
        let mut args = vec![
            "serve",
            "--role",
            roles,
            "--node-id",
            name,
            "--database-url",
            &self.database_url,
        ];
        args.extend_from_slice(extra);
        let mut env: Vec<(&str, &str)> = vec![("WEFT_POSTGRES__SCHEMA", &self.guard.schema)];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let dir: PathBuf = self.dir.path().to_path_buf();
        Server::spawn(&args, &env, |port| dir.join(format!("{name}-{port}.log")))
    }

    /// Writes a flow file in the log directory and returns its path.
    pub fn flow_file(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// Where the processes' logs are.
    pub fn logs(&self) -> &Path {
        self.dir.path()
    }
}

/// Every process's log, for failure messages.
pub fn all_logs(nodes: &[&Server]) -> String {
    nodes
        .iter()
        .map(|n| format!("==== {}\n{}", n.log.display(), n.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Applies a flow document through a gateway.
pub async fn apply_flow(gateway: &Server, yaml: &str) {
    let r = client()
        .post(format!("{}/v1/flows", gateway.url))
        .header("content-type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .expect("apply flow");
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "apply flow: {status} {body}");
}

/// Starts a run through a gateway; its id.
pub async fn start_run(gateway: &Server, flow: &str, input: Value) -> String {
    let r = client()
        .post(format!("{}/v1/runs", gateway.url))
        .json(&json!({"flow": flow, "input": input}))
        .send()
        .await
        .expect("start run");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::CREATED, "start run: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    body["id"].as_str().expect("run id").to_string()
}

/// A run's state as the gateway reports it, or `None` if the gateway did not answer.
pub async fn run_state(gateway: &Server, id: &str) -> Option<String> {
    let r = client()
        .get(format!("{}/v1/runs/{id}", gateway.url))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["state"].as_str().map(str::to_string)
}

/// Waits until every run in `ids` has finished; their final states, in order.
pub async fn wait_finished(gateway: &Server, ids: &[String], deadline: Duration) -> Vec<String> {
    let end = Instant::now() + deadline;
    let mut states: Vec<Option<String>> = vec![None; ids.len()];
    // The last state seen of each unfinished run (None: not found), for the failure message.
    let mut seen: Vec<Option<String>> = vec![None; ids.len()];
    loop {
        for (i, id) in ids.iter().enumerate() {
            if states[i].is_some() {
                continue;
            }
            seen[i] = run_state(gateway, id).await;
            if let Some(s) = &seen[i]
                && matches!(s.as_str(), "succeeded" | "failed" | "cancelled")
            {
                states[i] = Some(s.clone());
            }
        }
        if states.iter().all(Option::is_some) {
            return states.into_iter().flatten().collect();
        }
        let left: Vec<String> = ids
            .iter()
            .zip(&states)
            .zip(&seen)
            .filter(|((_, done), _)| done.is_none())
            .map(|((id, _), last)| format!("{id}: {}", last.as_deref().unwrap_or("not found")))
            .collect();
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?}: {} of {} runs unfinished ({})",
            left.len(),
            ids.len(),
            left.join(", ")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A process's `/v1/cluster` answer, or `None` if it did not answer.
pub async fn cluster_info(node: &Server) -> Option<Value> {
    let r = client()
        .get(format!("{}/v1/cluster", node.url))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// The workers a process's `GET /v1/workers` lists: `(node id, pid)` of each, or `None` if
/// it did not answer.
pub async fn workers_listed(node: &Server) -> Option<Vec<(String, u64)>> {
    let r = client()
        .get(format!("{}/v1/workers", node.url))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    body["workers"]
        .as_array()?
        .iter()
        .map(|w| Some((w["id"].as_str()?.to_string(), w["pid"].as_u64()?)))
        .collect()
}

/// A process's `/ready` status code, or `None` if it did not answer.
pub async fn ready_status(node: &Server) -> Option<StatusCode> {
    client()
        .get(format!("{}/ready", node.url))
        .send()
        .await
        .ok()
        .map(|r| r.status())
}
