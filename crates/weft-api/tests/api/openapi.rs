//! The OpenAPI document: served, version 3.1, and in step with the router.
//!
//! The list of routes comes from the router's own declarations: every `.route("path",
//! method(handler)...)` in the crate's sources. A route missing from the spec (or a spec
//! path the router does not serve) fails `openapi_covers_every_route`; see
//! `crates/weft-api/src/openapi.rs` for how to annotate a new route.

use super::*;
use std::collections::BTreeSet;
use std::path::Path;

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch", "head", "options"];

/// `(METHOD, path)` of every `.route(...)` call in `src`.
fn declared_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                routes_in(&std::fs::read_to_string(&path).unwrap(), &mut out);
            }
        }
    }
    out
}

fn routes_in(text: &str, out: &mut BTreeSet<(String, String)>) {
    for (start, _) in text.match_indices(".route(") {
        let rest = &text[start + ".route(".len()..];
        let rest = rest.trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        let Some(end) = rest.find('"') else { continue };
        let path = &rest[..end];
        // The method router: up to the parenthesis closing `.route(`.
        let args = &rest[end + 1..];
        let mut depth = 1;
        let mut close = args.len();
        for (i, c) in args.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &args[..close];
        for m in METHODS {
            for (i, _) in args.match_indices(&format!("{m}(")) {
                let before = args[..i].chars().last();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                    out.insert((m.to_uppercase(), path.to_string()));
                }
            }
        }
    }
}

fn spec_routes(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(*m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn the_route_scanner_reads_chained_methods() {
    let mut out = BTreeSet::new();
    routes_in(
        r#"Router::new().route("/a/{id}", get(h::get).delete(h::del)).route( "/b", post(x(y)) )"#,
        &mut out,
    );
    let want: BTreeSet<(String, String)> =
        [("GET", "/a/{id}"), ("DELETE", "/a/{id}"), ("POST", "/b")]
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
    assert_eq!(out, want);
}

#[test]
fn openapi_covers_every_route() {
    let declared = declared_routes();
    assert!(
        declared.len() > 20,
        "the scan found too few routes: {declared:?}"
    );
    let spec = spec_routes(&weft_api::openapi_spec());
    let missing: Vec<_> = declared.difference(&spec).collect();
    let extra: Vec<_> = spec.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "routes the router serves but the OpenAPI spec lacks (annotate the handler with \
         #[utoipa::path] and list it in openapi::ApiDoc): {missing:?}"
    );
    assert!(extra.is_empty(), "spec paths no route serves: {extra:?}");
}

#[tokio::test]
async fn spec_is_served_as_openapi_3_1() {
    let h = harness().await;
    let r = h.get("/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        r.body["openapi"]
    );
    assert!(r.body["paths"]["/v1/runs/batch"]["post"].is_object());
    assert!(r.body["components"]["schemas"]["ErrorBody"].is_object());
}

/// Property names of a component schema.
fn fields(spec: &Value, schema: &str) -> BTreeSet<String> {
    spec["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The `*Doc` mirrors of store and engine records must describe what is really sent.
#[tokio::test]
async fn documented_record_fields_match_real_responses() {
    let h = harness().await;
    let spec = weft_api::openapi_spec();
    h.yaml("name: broken\nnodes:\n  charge: {type: fail}\n")
        .await;
    let id = h.start(serde_json::json!({"flow": "broken"})).await;
    let run = h.wait_state(&id, "failed").await;
    let mut run_fields = keys(&run);
    run_fields.insert("finished_at".into());
    assert_eq!(run_fields, fields(&spec, "RunViewDoc"));
    let mut task = keys(&run["nodes"][0]);
    // Present only in a cluster, on a claimed ready task.
    task.extend(
        [
            "started_at",
            "scheduled_at",
            "output",
            "child_run",
            "claimed_by",
        ]
        .map(String::from),
    );
    assert_eq!(task, fields(&spec, "TaskDoc"));
    assert_eq!(
        keys(&run["nodes"][0]["attempts"][0]),
        fields(&spec, "AttemptDoc")
    );
    let dead = h.get(&format!("/v1/dlq/{id}/charge")).await.body;
    assert_eq!(keys(&dead), fields(&spec, "DeadTaskDoc"));
    let flow = h.get("/v1/flows/broken").await.body;
    assert_eq!(keys(&flow), fields(&spec, "FlowDoc"));
    let queue = &h.get("/v1/queues").await.body["queues"][0];
    assert_eq!(keys(queue), fields(&spec, "QueueStatsDoc"));
    let worker = &h.get("/v1/workers").await.body["workers"][0];
    assert_eq!(keys(worker), fields(&spec, "WorkerDoc"));
}
