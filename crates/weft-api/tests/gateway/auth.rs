//! API keys and roles: auth off without keys, 401/403, revocation, keys over HTTP.

use super::*;

#[tokio::test]
async fn without_keys_everything_is_open() {
    let h = harness_with(ApiOptions::default()).await;
    let r = h.send(req(Method::POST, "/v1/flows").yaml(FLOW)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .send(req(Method::POST, "/v1/runs").json(start_body()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        h.send(req(Method::GET, "/v1/flows")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn keys_turn_auth_on_and_roles_limit_what_each_may_do() {
    let h = harness_with(ApiOptions::default()).await;
    h.engine.flow_apply(FLOW).await.unwrap();
    let (viewer, _) = h.key(ApiRole::Viewer).await;
    let (operator, _) = h.key(ApiRole::Operator).await;
    let (admin, _) = h.key(ApiRole::Admin).await;
    h.wait_key(&admin).await;

    // No key, a wrong key, a malformed key: 401 with a Bearer challenge.
    let r = h.send(req(Method::GET, "/v1/flows")).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(header(&r, "www-authenticate"), "Bearer");
    // The viewer's key with its last hex digit changed (never to itself).
    let last = if viewer.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &viewer[..viewer.len() - 1]);
    assert_ne!(forged, viewer);
    let r = h.send(req(Method::GET, "/v1/flows").key(&forged)).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = h.send(req(Method::GET, "/v1/flows").key("garbage")).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    // An unauthorized start starts nothing.
    let r = h
        .send(req(Method::POST, "/v1/runs").json(start_body()))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");

    // Probes need no key.
    for path in ["/health", "/ready", "/metrics"] {
        let r = h.send(req(Method::GET, path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }

    // Viewer: reads only; its start is refused before the handler runs.
    let r = h.send(req(Method::GET, "/v1/flows").key(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h
        .send(
            req(Method::POST, "/v1/runs")
                .key(&viewer)
                .json(start_body()),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operator"),
        "{}",
        r.text
    );
    assert_eq!(h.run_count().await, 0, "a refused start created a run");

    // Operator: starts runs, but may not apply flows.
    let r = h
        .send(
            req(Method::POST, "/v1/runs")
                .key(&operator)
                .json(start_body()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .send(req(Method::POST, "/v1/flows").key(&operator).yaml(FLOW))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin"),
        "{}",
        r.text
    );

    // Admin: everything.
    let r = h
        .send(
            req(Method::POST, "/v1/flows")
                .key(&admin)
                .yaml("name: other\nnodes:\n  b:\n    type: noop\n"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .send(
            req(Method::PUT, "/v1/queues/q")
                .key(&admin)
                .json(json!({"concurrency": 3})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h.send(req(Method::GET, "/v1/cluster").key(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(h.run_count().await, 1);
}

#[tokio::test]
async fn a_revoked_key_stops_working() {
    let h = harness_with(ApiOptions::default()).await;
    let (admin, _) = h.key(ApiRole::Admin).await;
    let (viewer, viewer_id) = h.key(ApiRole::Viewer).await;
    h.wait_key(&viewer).await;
    let r = h.send(req(Method::GET, "/v1/flows").key(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.store.apikey_revoke(&viewer_id, 2).await.unwrap();
    // The key cache refreshes within KEY_REFRESH.
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = h.send(req(Method::GET, "/v1/flows").key(&viewer)).await;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            tokio::time::Instant::now() < end,
            "revoked key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = h.send(req(Method::GET, "/v1/flows").key(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn the_first_key_turns_auth_on_even_without_traffic() {
    let h = harness_with(ApiOptions::default()).await;
    let r = h.send(req(Method::GET, "/v1/flows")).await;
    assert_eq!(r.status, StatusCode::OK, "open while no key exists");
    h.key(ApiRole::Admin).await;
    // No request in between: the key set must be refreshed by time alone, so that the very
    // next request is already refused. (This waits on purpose: time is what is tested.)
    tokio::time::sleep(weft_api::KEY_REFRESH * 2 + Duration::from_millis(200)).await;
    let r = h.send(req(Method::GET, "/v1/flows")).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn admins_manage_keys_over_http_and_changes_apply_at_once() {
    let h = harness_with(ApiOptions::default()).await;
    let (admin, _) = h.key(ApiRole::Admin).await;
    let (viewer, _) = h.key(ApiRole::Viewer).await;
    h.wait_key(&viewer).await;
    let r = h.send(req(Method::GET, "/v1/keys").key(&viewer)).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");

    let body = json!({"role": "operator", "name": "deploy bot"});
    let r = h
        .send(req(Method::POST, "/v1/keys").key(&admin).json(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["role"], "operator");
    let op = r.body["key"].as_str().unwrap().to_string();
    let op_id = r.body["id"].as_str().unwrap().to_string();
    // No waiting: this process reloaded its keys before answering.
    let r = h
        .send(req(Method::POST, "/v1/runs").key(&op).json(start_body()))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");

    let r = h.send(req(Method::GET, "/v1/keys").key(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["keys"].as_array().unwrap().len(), 3);
    assert!(!r.text.contains("hash") && !r.text.contains(&op[op.len() - 20..]));

    let bad = json!({"role": "root"});
    let r = h
        .send(req(Method::POST, "/v1/keys").key(&admin).json(bad))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");

    let r = h
        .send(req(Method::DELETE, &format!("/v1/keys/{op_id}")).key(&admin))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["revoked_at"].is_i64(), "{}", r.text);
    let r = h.send(req(Method::GET, "/v1/flows").key(&op)).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = h
        .send(req(Method::DELETE, &format!("/v1/keys/{op_id}")).key(&admin))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    let r = h
        .send(req(Method::DELETE, "/v1/keys/nope").key(&admin))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}
