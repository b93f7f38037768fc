//! `weft schedule` against a real `weft up`: a bad document is refused naming the field,
//! a good one lists with its next fire times, and pause, trigger and delete work.

mod common;

use common::{Server, ok, text, weft};
use serde_json::Value;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_are_managed_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]).await;
    let url = server.url.as_str();
    let flow = write(
        tmp.path(),
        "f.yaml",
        "name: report\nnodes:\n  a: {type: noop}\n",
    );
    ok(&weft(&["flow", "apply", &flow, "--url", url]).await);

    let bad = write(
        tmp.path(),
        "bad.yaml",
        "name: nightly\nflow: report\ncron: '0 30 25 * * *'\ntimezone: Europe/Berlin\n",
    );
    let o = weft(&["schedule", "apply", &bad, "--url", url]).await;
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = text(&o);
    assert!(
        err.contains("invalid schedule") && err.contains("hour field \"25\""),
        "{err}"
    );

    let good = write(
        tmp.path(),
        "good.yaml",
        "name: nightly\nflow: report\ncron: '0 30 2 * * *'\ntimezone: Europe/Berlin\n",
    );
    let out = ok(&weft(&["schedule", "apply", &good, "--url", url]).await);
    assert!(
        out.contains("nightly") && out.contains("0 30 2 * * *"),
        "{out}"
    );
    let out = ok(&weft(&["schedule", "list", "--url", url]).await);
    assert!(out.contains("nightly") && out.contains("active"), "{out}");
    let got = json(&ok(&weft(&[
        "schedule", "get", "nightly", "--next", "3", "-o", "json", "--url", url,
    ])
    .await));
    assert_eq!(got["upcoming"].as_array().unwrap().len(), 3, "{got}");

    let paused = json(&ok(&weft(&[
        "schedule", "pause", "nightly", "-o", "json", "--url", url,
    ])
    .await));
    assert_eq!(paused["spec"]["paused"], true);
    let fired = json(&ok(&weft(&[
        "schedule", "trigger", "nightly", "-o", "json", "--url", url,
    ])
    .await));
    let run = fired["run_id"].as_str().unwrap();
    ok(&weft(&["run", "get", run, "--url", url]).await);
    ok(&weft(&["schedule", "delete", "nightly", "--url", url]).await);
    let o = weft(&["schedule", "get", "nightly", "--url", url]).await;
    assert!(text(&o).1.contains("not_found"), "{:?}", text(&o));
}
