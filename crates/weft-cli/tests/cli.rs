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
