//! Health, catalog, routing errors, and everything about applying flow documents.

use super::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_catalog_and_unknown_routes() {
    let h = harness().await;
    let r = h.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": "ok"}));

    let r = h.get("/v1/nodes").await;
    assert_eq!(r.status, StatusCode::OK);
    let kinds: Vec<&str> = r.body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"transform") && kinds.contains(&"http"),
        "{kinds:?}"
    );

    let r = h.get("/v2/nothing").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = h
        .send(Method::DELETE, "/v1/flows", &[], Body::empty())
        .await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let allow = r.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_yaml_and_json_flows_with_versions() {
    let h = harness().await;
    let r = h.yaml(NOOP_FLOW).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"name": "tick", "version": 1, "created": true})
    );

    let r = h.yaml(NOOP_FLOW).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"name": "tick", "version": 1, "created": false})
    );

    let changed = "name: tick\ndescription: now documented\nnodes:\n  a:\n    type: noop\n";
    let r = h.yaml(changed).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["version"], 2);

    // The same document as JSON is the same flow: nothing new is stored.
    let as_json =
        json!({"name": "tick", "description": "now documented", "nodes": {"a": {"type": "noop"}}});
    let r = h.json(Method::POST, "/v1/flows", as_json).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"name": "tick", "version": 2, "created": false})
    );

    let other = json!({"name": "other", "nodes": {"x": {"type": "noop"}}});
    let r = h.json(Method::POST, "/v1/flows", other).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["version"], 1);

    let r = h.get("/v1/flows/tick").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["spec"]["description"], "now documented");
    let r = h.get("/v1/flows/tick?version=1").await;
    assert_eq!(r.body["version"], 1);
    assert!(r.body["spec"].get("description").is_none(), "{}", r.body);

    let r = h.get("/v1/flows").await;
    let mut names: Vec<&str> = r.body["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["other", "tick"]);

    assert_error(
        &h.get("/v1/flows/nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.get("/v1/flows/tick?version=9").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.get("/v1/flows/tick?version=two").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_media_types_are_checked() {
    let h = harness().await;
    for ct in [
        "text/yaml",
        "application/x-yaml",
        "application/yaml; charset=utf-8",
    ] {
        let r = h
            .send(
                Method::POST,
                "/v1/flows",
                &[("content-type", ct)],
                NOOP_FLOW,
            )
            .await;
        assert!(r.status.is_success(), "{ct}: {}", r.body);
    }
    let r = h
        .send(
            Method::POST,
            "/v1/flows",
            &[("content-type", "text/plain")],
            NOOP_FLOW,
        )
        .await;
    let err = assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("application/yaml"),
        "{err}"
    );
    let r = h.send(Method::POST, "/v1/flows", &[], NOOP_FLOW).await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_flow_lists_every_issue_with_its_path() {
    let h = harness().await;
    let doc = "name: bad\nnodes:\n  fetch:\n    type: noop\n  ship:\n    type: noop\n    needs: [fetc]\n  c:\n    type: htp\n";
    let r = h.yaml(doc).await;
    let err = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "flow_invalid");
    let details = err["details"].as_array().unwrap();
    assert!(details.len() >= 2, "{err}");
    let has = |path: &str, needle: &str| {
        details
            .iter()
            .any(|d| d["path"] == path && d["message"].as_str().unwrap().contains(needle))
    };
    assert!(has("nodes.ship.needs[0]", "did you mean `fetch`"), "{err}");
    assert!(has("nodes.c.type", "did you mean `http`"), "{err}");
    // Nothing was stored.
    assert_error(
        &h.get("/v1/flows/bad").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // A shape error in a JSON document names its path too.
    let r = h
        .json(
            Method::POST,
            "/v1/flows",
            json!({"name": "bad", "nodes": {"a": {"type": "noop", "retries": 3}}}),
        )
        .await;
    let err = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "flow_invalid");
    assert_eq!(err["details"][0]["path"], "nodes.a.retries", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_input_is_a_400_naming_the_field() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let ct = [("content-type", "application/json")];

    let r = h
        .send(Method::POST, "/v1/runs", &ct, r#"{"flow": "tick", "#)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json");
    let r = h
        .send(Method::POST, "/v1/flows", &ct, r#"{"name": "x", nodes}"#)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json");

    let r = h.send(Method::POST, "/v1/runs", &ct, "").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json");
    let r = h.send(Method::POST, "/v1/runs", &ct, r#"["tick"]"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");

    let r = h
        .json(
            Method::POST,
            "/v1/runs",
            json!({"flow": "tick", "inptu": {}}),
        )
        .await;
    let err = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        err["message"].as_str().unwrap().contains("`inptu`"),
        "{err}"
    );
    assert_eq!(err["details"][0]["path"], "inptu", "{err}");

    let r = h
        .json(
            Method::POST,
            "/v1/runs",
            json!({"flow": "tick", "version": "one"}),
        )
        .await;
    let err = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(err["details"][0]["path"], "version", "{err}");

    let r = h
        .send(Method::POST, "/v1/runs", &[], r#"{"flow": "tick"}"#)
        .await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    let r = h
        .json(Method::POST, "/v1/runs", json!({"flow": "nope"}))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_in_the_error_shape() {
    let h = harness_with(ApiOptions {
        max_body_bytes: 1024,
        ..ApiOptions::default()
    })
    .await;
    let big_yaml = format!(
        "name: big\ndescription: \"{}\"\nnodes:\n  a:\n    type: noop\n",
        "x".repeat(4096)
    );
    let r = h.yaml(&big_yaml).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");

    let big_run = json!({"flow": "tick", "input": {"pad": "y".repeat(4096)}});
    let r = h.json(Method::POST, "/v1/runs", big_run).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");

    // Under the limit still works.
    assert_eq!(h.yaml(NOOP_FLOW).await.status, StatusCode::CREATED);
}
