//! The real `weft` binary end to end: a server started with `weft up`, driven by the
//! client commands, stopped with signals; plus `weft run --local` and start-up errors.

mod common;

use common::{Server, eventually, free_port, ok, text, weft, weft_command};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;

const HELLO: &str = r#"name: hello
nodes:
  greet:
    type: transform
    params:
      value: {msg: "hi {{ input.who }}"}
  shout:
    type: transform
    needs: [greet]
    params:
      value: "{{ nodes.greet.msg | upper }}"
"#;

const BROKEN: &str = r#"name: broken
nodes:
  boom:
    type: fail
    retry: {max_attempts: 1}
"#;

const INVALID: &str = r#"name: invalid
nodes:
  a:
    type: nope
    needs: [ghost]
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn client_commands_drive_a_real_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]).await;
    let url = server.url.as_str();
    let hello = write(tmp.path(), "hello.yaml", HELLO);
    let broken = write(tmp.path(), "broken.json", &json_of(BROKEN));

    // Apply: YAML and JSON by extension; a repeat keeps the version.
    let out = ok(&weft(&["flow", "apply", &hello, &broken, "--url", url]).await);
    assert!(
        out.contains("hello") && out.contains("broken") && out.contains("created"),
        "{out}"
    );
    let out = ok(&weft(&["flow", "apply", &hello, "--url", url]).await);
    assert!(out.contains("unchanged"), "{out}");
    let out = ok(&weft(&["flow", "list", "--url", url]).await);
    assert!(out.contains("hello") && out.contains("broken"), "{out}");
    let out = ok(&weft(&["flow", "get", "hello", "--url", url]).await);
    assert!(
        out.contains("name: hello") && out.contains("greet"),
        "{out}"
    );

    // Start and wait: the finished run is printed node by node.
    let out = ok(&weft(&[
        "run",
        "start",
        "hello",
        "--input",
        r#"{"who": "ada"}"#,
        "--wait",
        "--url",
        url,
    ])
    .await);
    assert!(out.contains("succeeded") && out.contains("HI ADA"), "{out}");

    // Start without waiting prints the id; `run get` shows each node.
    let id = ok(&weft(&[
        "run",
        "start",
        "hello",
        "--url",
        url,
        "--input",
        r#"{"who":"bo"}"#,
    ])
    .await)
    .trim()
    .to_string();
    assert_eq!(id.len(), 36, "{id}");
    let run = eventually(Duration::from_secs(30), "the run to finish", || async {
        let out = ok(&weft(&["run", "get", &id, "--url", url, "-o", "json"]).await);
        let run = json(&out);
        (run["state"] == "succeeded").then_some(run)
    })
    .await;
    assert_eq!(run["nodes"][1]["output"], "HI BO");
    let out = ok(&weft(&["run", "get", &id, "--url", url]).await);
    let greet = out.lines().find(|l| l.starts_with("greet")).expect(&out);
    assert!(
        greet.contains("succeeded") && greet.contains("hi bo"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("shout") && l.contains("HI BO")),
        "{out}"
    );

    // A failing run: `--wait` exits 1 and the node lands in the DLQ.
    let o = weft(&["run", "start", "broken", "--wait", "--url", url]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains("failed") && err.contains("failed"),
        "{out}\n{err}"
    );
    let out = ok(&weft(&["dlq", "list", "--output", "json", "--url", url]).await);
    let dead = json(&out);
    let dead = dead["dead"].as_array().expect(&out);
    assert_eq!(dead.len(), 1, "{out}");
    assert_eq!(dead[0]["flow"], "broken");
    assert_eq!(dead[0]["node"], "boom");
    let out = ok(&weft(&["dlq", "list", "--url", url, "--flow", "broken"]).await);
    assert!(
        out.contains("boom") && out.contains("failed on purpose"),
        "{out}"
    );

    let out = ok(&weft(&["run", "list", "--flow", "hello", "--url", url]).await);
    assert_eq!(
        out.lines().filter(|l| l.contains("succeeded")).count(),
        2,
        "{out}"
    );

    // Queues change live.
    let out = ok(&weft(&[
        "queue",
        "set",
        "default",
        "--concurrency",
        "5",
        "--url",
        url,
    ])
    .await);
    let row = out.lines().find(|l| l.starts_with("default")).expect(&out);
    assert_eq!(row.split_whitespace().nth(1), Some("5"), "{out}");
    let out = ok(&weft(&["queue", "list", "-o", "json", "--url", url]).await);
    let queues = json(&out);
    let default = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .expect(&out);
    assert_eq!(default["concurrency"], 5);

    let out = ok(&weft(&["nodes", "--url", url]).await);
    assert!(out.contains("http") && out.contains("transform"), "{out}");

    // Server errors: `error (code): message`, exit 1.
    let o = weft(&["run", "get", "no-such-run", "--url", url]).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("error (not_found)"), "{err}");

    // An invalid flow: exit 1, the file and every issue on stderr.
    let invalid = write(tmp.path(), "invalid.yaml", INVALID);
    let o = weft(&["flow", "apply", &invalid, "--url", url]).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&invalid), "{err}");
    assert!(
        err.contains("nodes.a.type") && err.contains("nodes.a.needs"),
        "{err}"
    );
}

/// `weft flow apply` takes a JSON document; this keeps the fixtures in one format.
fn json_of(yaml: &str) -> String {
    let v: Value = serde_saphyr::from_str(yaml).unwrap();
    v.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_exits_2() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let o = weft(&["queue", "list", "--url", &url]).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot reach weft at {url}")),
        "{err}"
    );
    assert!(err.contains("is `weft up` running?"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_server_with_exit_0() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("data"), &[]).await;
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    assert!(
        server.log_text().contains("weft stopped"),
        "{}",
        server.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_queue_limits_and_survives_a_bad_file() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("weft.toml");
    std::fs::write(&config, "[queues]\nemail = 3\n").unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .await;
    let concurrency = |url: String| async move {
        let out = ok(&weft(&["queue", "list", "-o", "json", "--url", &url]).await);
        let v = json(&out);
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "email")
            .and_then(|q| q["concurrency"].as_u64())
    };
    assert_eq!(concurrency(server.url.clone()).await, Some(3));

    std::fs::write(&config, "[queues]\nemail = 7\n").unwrap();
    server.signal("HUP");
    eventually(Duration::from_secs(10), "email to get 7 slots", || async {
        (concurrency(server.url.clone()).await == Some(7)).then_some(())
    })
    .await;

    std::fs::write(&config, "[queues]\nemail = 0\n").unwrap();
    server.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "the reload error in the log",
        || async {
            server
                .log_text()
                .contains("keeping the current settings")
                .then_some(())
        },
    )
    .await;
    assert!(
        server.log_text().contains("queues.email = 0"),
        "{}",
        server.log_text()
    );
    assert_eq!(concurrency(server.url.clone()).await, Some(7));
}

#[tokio::test(flavor = "multi_thread")]
async fn flows_dir_is_applied_at_start_and_an_invalid_file_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let flows = tmp.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    write(&flows, "hello.yaml", HELLO);
    let server = Server::start(
        &tmp.path().join("data"),
        &["--flows", flows.to_str().unwrap()],
    )
    .await;
    let out = ok(&weft(&["flow", "list", "--url", &server.url]).await);
    assert!(out.contains("hello"), "{out}");
    assert!(
        server.log_text().contains("flow applied"),
        "{}",
        server.log_text()
    );
    drop(server);

    let bad = write(&flows, "invalid.yaml", INVALID);
    let o = weft_command()
        .args(["up", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(tmp.path().join("data2"))
        .arg("--flows")
        .arg(&flows)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&bad), "{err}");
    assert!(
        err.contains("nodes.a.type") && err.contains("nodes.a.needs"),
        "{err}"
    );
}

#[test]
fn unknown_weft_variable_stops_up_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let o = weft_command()
        .args(["up", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(tmp.path())
        .env("WEFT_BOGUS", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("WEFT_BOGUS") && err.contains("WEFT_DATA_DIR"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_local_prints_the_finished_run() {
    let tmp = tempfile::tempdir().unwrap();
    let hello = write(tmp.path(), "hello.yaml", HELLO);
    let out = ok(&weft(&["run", &hello, "--local", "--input", r#"{"who":"cy"}"#]).await);
    let run = json(&out);
    assert_eq!(run["state"], "succeeded", "{out}");
    assert_eq!(run["nodes"][1]["output"], "HI CY", "{out}");

    let broken = write(tmp.path(), "broken.yaml", BROKEN);
    let o = weft(&["run", &broken, "--local"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert_eq!(json(&out)["state"], "failed", "{out}");

    let invalid = write(tmp.path(), "invalid.yaml", INVALID);
    let o = weft(&["run", &invalid, "--local"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&invalid) && err.contains("nodes.a.type"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_prints_the_schema_version() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = ok(&weft(&["migrate", "--data-dir", data.to_str().unwrap()]).await);
    assert_eq!(out.trim(), weft_store_sqlite::SCHEMA_VERSION.to_string());
    assert!(weft_store_sqlite::db_path(&data).exists());
}

const HELLO_V2: &str = r#"name: hello
nodes:
  greet:
    type: transform
    params:
      value: {msg: "hello {{ input.who }}"}
  shout:
    type: transform
    needs: [greet]
    params:
      value: "{{ nodes.greet.msg | upper }}"
  extra:
    type: noop
    needs: [shout]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn flow_history_batches_and_retries_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]).await;
    let url = server.url.as_str();
    let v1 = write(tmp.path(), "v1.yaml", HELLO);
    let v2 = write(tmp.path(), "v2.yaml", HELLO_V2);
    ok(&weft(&["flow", "apply", &v1, "--url", url]).await);
    ok(&weft(&["flow", "apply", &v2, "--url", url]).await);

    let out = ok(&weft(&["flow", "versions", "hello", "--url", url]).await);
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with('1')),
        "{out}"
    );
    assert!(
        out.lines().nth(2).is_some_and(|l| l.starts_with('2')),
        "{out}"
    );
    let out = ok(&weft(&["flow", "diff", "hello", "--from", "1", "--url", url]).await);
    assert!(out.contains("added") && out.contains("extra"), "{out}");
    assert!(out.contains("params.value.msg"), "{out}");
    let d = json(&ok(&weft(&[
        "flow", "diff", "hello", "--from", "1", "--to", "2", "-o", "json", "--url", url,
    ])
    .await));
    assert_eq!(d["added"], serde_json::json!(["extra"]));

    // A batch from JSON Lines: one good start, one unknown flow; exit 1 after printing both.
    let batch = write(
        tmp.path(),
        "batch.jsonl",
        "{\"flow\": \"hello\", \"input\": {\"who\": \"a\"}}\n{\"flow\": \"ghost\"}\n",
    );
    let o = weft(&["run", "start-batch", &batch, "-o", "json", "--url", url]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    let items = json(&out);
    assert!(items["runs"][0]["id"].is_string(), "{out}");
    assert_eq!(items["runs"][1]["error"]["code"], "not_found", "{out}");
    assert!(err.contains("1 started, 1 failed"), "{err}");
    let batch = write(
        tmp.path(),
        "batch.json",
        r#"[{"flow": "hello", "input": {"who": "b"}}, {"flow": "hello", "input": {"who": "c"}}]"#,
    );
    let out = ok(&weft(&["run", "start-batch", &batch, "--url", url]).await);
    assert_eq!(out.lines().count(), 3, "a header and two runs: {out}");

    // Time filters.
    let out = ok(&weft(&[
        "run",
        "list",
        "--created-after",
        "2999-01-01T00:00:00Z",
        "-o",
        "json",
        "--url",
        url,
    ])
    .await);
    assert!(json(&out)["runs"].as_array().unwrap().is_empty(), "{out}");
    let o = weft(&["run", "list", "--created-after", "soon", "--url", url]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("error (bad_request)"), "{}", text(&o).1);

    // Retry: a node failing on its first attempt only, with no retries, then a retry.
    let once = write(
        tmp.path(),
        "once.yaml",
        "name: once\nnodes:\n  boom:\n    type: fail\n    params: {times: 1}\n",
    );
    ok(&weft(&["flow", "apply", &once, "--url", url]).await);
    let o = weft(&["run", "start", "once", "--wait", "-o", "json", "--url", url]).await;
    let id = json(&text(&o).0)["id"].as_str().unwrap().to_string();
    let out = ok(&weft(&["run", "tasks", &id, "--url", url]).await);
    assert!(
        out.contains("boom") && out.contains("failed on purpose"),
        "{out}"
    );
    let (_, err) = text(&weft(&["run", "retry", &id, "--url", url]).await);
    assert!(err.contains("retried from boom"), "{err}");
    let o = weft(&["run", "retry", "no-such-run", "--url", url]).await;
    assert_eq!(o.status.code(), Some(1));

    // Delete: refused while a run is live (a paused queue keeps it queued), then done.
    ok(&weft(&["queue", "pause", "default", "--url", url]).await);
    let a = ok(&weft(&["run", "start", "hello", "--url", url]).await)
        .trim()
        .to_string();
    let b = ok(&weft(&["run", "start", "hello", "--url", url]).await)
        .trim()
        .to_string();
    let o = weft(&["flow", "delete", "hello", "--url", url]).await;
    assert!(text(&o).1.contains("error (conflict)"), "{}", text(&o).1);
    let out = ok(&weft(&["run", "cancel", &a, &b, "--url", url]).await);
    assert_eq!(
        out.lines().filter(|l| l.contains("true")).count(),
        2,
        "{out}"
    );
    ok(&weft(&["queue", "resume", "default", "--url", url]).await);
    eventually(
        Duration::from_secs(30),
        "every hello run to finish",
        || async {
            let out = ok(&weft(&[
                "run", "list", "--flow", "hello", "--state", "queued", "-o", "json", "--url", url,
            ])
            .await);
            json(&out)["runs"]
                .as_array()
                .unwrap()
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let (_, err) = text(&weft(&["flow", "delete", "hello", "--url", url]).await);
    assert!(err.contains("flow hello deleted (2 versions)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_queues_workers_and_openapi_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]).await;
    let url = server.url.as_str();
    let broken = write(tmp.path(), "broken.yaml", BROKEN);
    ok(&weft(&["flow", "apply", &broken, "--url", url]).await);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let o = weft(&[
            "run", "start", "broken", "--wait", "-o", "json", "--url", url,
        ])
        .await;
        ids.push(json(&text(&o).0)["id"].as_str().unwrap().to_string());
    }

    let out = ok(&weft(&["dlq", "show", &ids[0], "boom", "--url", url]).await);
    assert!(
        out.contains(&ids[0]) && out.contains("failed on purpose"),
        "{out}"
    );
    let (_, err) = text(&weft(&["dlq", "discard", &ids[0], "boom", "--url", url]).await);
    assert!(err.contains("discarded"), "{err}");
    let o = weft(&["dlq", "show", &ids[0], "boom", "--url", url]).await;
    assert!(text(&o).1.contains("error (not_found)"));

    let out = ok(&weft(&[
        "dlq",
        "list",
        "--error",
        "ON PURPOSE",
        "--since",
        "1h",
        "--url",
        url,
    ])
    .await);
    assert!(out.contains(&ids[1]) && out.contains(&ids[2]), "{out}");
    let o = weft(&["dlq", "list", "--since", "yesterday", "--url", url]).await;
    assert_eq!(o.status.code(), Some(1), "a bad time is refused");
    let (_, err) = text(&o);
    assert!(
        err.contains("\"yesterday\" is neither an RFC 3339 time"),
        "{err}"
    );

    let o = weft(&[
        "dlq", "replay", "--flow", "broken", "-o", "json", "--url", url,
    ])
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let summary = json(&out);
    assert_eq!(summary["replayed"], 2, "the two dead tasks left: {out}");
    assert_eq!(summary["matched"], 2, "{out}");
    assert!(err.contains("replayed 2 of 2 matched, 0 failed"), "{err}");
    let o = weft(&["dlq", "replay", &ids[0], "boom", "--url", url]).await;
    assert_eq!(
        o.status.code(),
        Some(1),
        "a discarded task is not replayable"
    );

    // A delayed run waits queued, and explain says until when.
    let o = weft(&[
        "run", "start", "broken", "--delay", "1h", "-o", "json", "--url", url,
    ])
    .await;
    let later = json(&text(&o).0)["id"].as_str().unwrap().to_string();
    let out = ok(&weft(&["run", "explain", &later, "--url", url]).await);
    assert!(
        out.contains("waiting for the run's scheduled start at"),
        "{out}"
    );
    let x = json(&ok(&weft(&[
        "run", "explain", &later, "-o", "json", "--url", url,
    ])
    .await));
    assert_eq!(x["reasons"][0]["code"], "scheduled_start", "{x}");

    let out = ok(&weft(&["queue", "pause", "default", "-o", "json", "--url", url]).await);
    assert_eq!(json(&out)["paused"], true);
    let out = ok(&weft(&["queue", "resume", "default", "--url", url]).await);
    assert!(out.contains("OLDEST READY"), "{out}");

    let out = ok(&weft(&["workers", "--url", url]).await);
    assert!(
        out.contains(&server.pid().to_string()) && out.contains("default"),
        "{out}"
    );
    let w = json(&ok(&weft(&["workers", "-o", "json", "--url", url]).await));
    assert_eq!(w["workers"][0]["pid"], server.pid());

    let spec = json(&ok(&weft(&["openapi", "--url", url]).await));
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(spec["paths"]["/v1/workers"]["get"].is_object());
}

/// Runs a client command with `WEFT_API_KEY` set (or not).
async fn weft_as(key: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::from(weft_command());
    if let Some(k) = key {
        cmd.env("WEFT_API_KEY", k);
    }
    cmd.args(args).stdin(Stdio::null());
    cmd.output().await.expect("weft runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_are_managed_on_the_data_dir_and_enforced_by_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = data.to_string_lossy().into_owned();
    let hello = write(tmp.path(), "hello.yaml", HELLO);

    // A fresh server is open, and says how to create the first key.
    let server = Server::start(&data, &[]).await;
    let url = server.url.as_str();
    ok(&weft_as(None, &["flow", "list", "--url", url]).await);
    assert!(
        server
            .log_text()
            .contains("weft apikey create --role admin"),
        "{}",
        server.log_text()
    );

    // Keys are created beside the running server, printed once.
    let admin = ok(&weft(&[
        "apikey",
        "create",
        "--role",
        "admin",
        "--name",
        "ci",
        "--data-dir",
        &dir,
    ])
    .await);
    let admin = admin.trim().to_string();
    assert!(admin.starts_with("weft_") && admin.len() > 64, "{admin}");
    let viewer = ok(&weft(&["apikey", "create", "--role", "viewer", "--data-dir", &dir]).await);
    let viewer = viewer.trim().to_string();
    let listed = json(&ok(&weft(&[
        "apikey",
        "list",
        "-o",
        "json",
        "--data-dir",
        &dir,
    ])
    .await));
    let keys = listed.as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    assert_eq!(
        (keys[0]["role"].as_str(), keys[0]["name"].as_str()),
        (Some("admin"), Some("ci"))
    );
    let secret = admin.rsplit('_').next().unwrap();
    assert!(
        !listed.to_string().contains(secret),
        "the secret is never shown again"
    );
    let table = ok(&weft(&["apikey", "list", "--data-dir", &dir]).await);
    assert!(
        table.contains("ROLE") && table.contains("viewer"),
        "{table}"
    );
    let viewer_id = keys[1]["id"].as_str().unwrap().to_string();

    // The server picks the keys up: no key is 401, a viewer may read but not write.
    let o = eventually(Duration::from_secs(10), "auth to turn on", || async {
        let o = weft_as(None, &["flow", "list", "--url", url]).await;
        (!o.status.success()).then_some(o)
    })
    .await;
    assert!(text(&o).1.contains("unauthorized"), "{}", text(&o).1);
    ok(&weft_as(Some(&admin), &["flow", "apply", &hello, "--url", url]).await);
    ok(&weft_as(Some(&viewer), &["flow", "list", "--url", url]).await);
    let o = weft_as(Some(&viewer), &["flow", "apply", &hello, "--url", url]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("forbidden"), "{}", text(&o).1);

    // Revoked beside the running server: the key stops working.
    ok(&weft(&["apikey", "revoke", &viewer_id, "--data-dir", &dir]).await);
    let o = weft(&["apikey", "revoke", &viewer_id, "--data-dir", &dir]).await;
    assert_eq!(o.status.code(), Some(1), "a second revoke fails");
    eventually(
        Duration::from_secs(10),
        "the revoked key to fail",
        || async {
            let o = weft_as(Some(&viewer), &["flow", "list", "--url", url]).await;
            (!o.status.success() && text(&o).1.contains("unauthorized")).then_some(())
        },
    )
    .await;
    let input = r#"{"who": "ada"}"#;
    let args = [
        "run", "start", "hello", "--input", input, "--wait", "--url", url,
    ];
    ok(&weft_as(Some(&admin), &args).await);
    // Probes stay open.
    let r = reqwest::get(format!("{url}/ready")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn breakers_lists_an_open_breaker() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]).await;
    let url = server.url.as_str();
    // A port nobody listens on: connection refused, which opens a breaker at threshold 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = closed.local_addr().unwrap().to_string();
    drop(closed);
    let flow = format!(
        "name: guarded\nnodes:\n  call:\n    type: http\n    params: {{url: \"http://{target}/\"}}\n    \
         circuit_breaker: {{failure_threshold: 1, reset_timeout: 1h, max_reset_timeout: 1h}}\n"
    );
    let file = write(tmp.path(), "guarded.yaml", &flow);
    ok(&weft(&["flow", "apply", &file, "--url", url]).await);
    weft(&["run", "start", "guarded", "--wait", "--url", url]).await;

    let out = ok(&weft(&["breakers", "--url", url]).await);
    assert!(
        out.contains("NEXT PROBE") && out.contains(&target) && out.contains("open"),
        "{out}"
    );
    let b = json(&ok(&weft(&["breakers", "-o", "json", "--url", url]).await));
    assert_eq!(b["breakers"][0]["target"], target.as_str(), "{b}");
    assert_eq!(b["breakers"][0]["state"], "open", "{b}");
    assert_eq!(b["breakers"][0]["failures_in_window"], 0, "{b}");
}
