//! Rate limits (per IP, per key), load shedding and request timeouts.

use super::*;

fn tight(per_ip: Option<Rate>, per_key: Option<Rate>) -> ApiOptions {
    ApiOptions {
        limits: Limits {
            per_ip,
            per_key,
            ..Limits::default()
        },
        ..ApiOptions::default()
    }
}

/// Sends until a 429 comes back; returns it and how many got through first.
async fn until_limited(h: &Harness, make: impl Fn() -> Req<'static>) -> (usize, Resp) {
    for ok in 0..100 {
        let r = h.send(make()).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            return (ok, r);
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            r.headers.contains_key("ratelimit-remaining"),
            "{:?}",
            r.headers
        );
    }
    panic!("never rate limited");
}

async fn wait_allowed(h: &Harness, make: impl Fn() -> Req<'static>) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while h.send(make()).await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < end, "limit never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn per_ip_limit_answers_429_and_recovers() {
    let h = harness_with(tight(Some("5/s".parse().unwrap()), None)).await;
    let a = || req(Method::GET, "/v1/flows").ip("10.0.0.1");
    let (passed, r) = until_limited(&h, a).await;
    assert_eq!(passed, 5, "the burst is 5");
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(header(&r, "retry-after"), "1");
    assert_eq!(header(&r, "ratelimit-limit"), "5");
    assert_eq!(header(&r, "ratelimit-remaining"), "0");
    assert!(header(&r, "ratelimit-reset").parse::<u64>().unwrap() >= 1);
    // Another address has its own bucket; probes are never limited.
    let r = h.send(req(Method::GET, "/v1/flows").ip("10.0.0.2")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h.send(req(Method::GET, "/health").ip("10.0.0.1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_allowed(&h, a).await;
}

#[tokio::test]
async fn per_key_limit_answers_429_and_recovers() {
    let h = harness_with(tight(None, Some("3/s".parse().unwrap()))).await;
    let (k1, _) = h.key(ApiRole::Viewer).await;
    let (k2, _) = h.key(ApiRole::Viewer).await;
    h.wait_key(&k2).await;
    let k1: &'static str = Box::leak(k1.into_boxed_str());
    let k2: &'static str = Box::leak(k2.into_boxed_str());
    let with_k1 = || req(Method::GET, "/v1/flows").key(k1);
    let (passed, r) = until_limited(&h, with_k1).await;
    assert_eq!(passed, 3);
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(header(&r, "ratelimit-limit"), "3");
    let r = h.send(req(Method::GET, "/v1/flows").key(k2)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the other key is not limited: {}",
        r.text
    );
    wait_allowed(&h, with_k1).await;
}

/// A body that never arrives: the handler waits for it, holding its request open.
fn stalled_body() -> Body {
    Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>())
}

#[tokio::test]
async fn past_max_inflight_requests_are_shed_with_503() {
    let h = harness_with(ApiOptions {
        max_inflight_requests: 1,
        ..ApiOptions::default()
    })
    .await;
    let hold = || {
        let held = req(Method::POST, "/v1/flows")
            .yaml("")
            .build(stalled_body());
        tokio::spawn(h.app.clone().oneshot(held))
    };
    let mut holder = hold();
    let end = tokio::time::Instant::now() + DEADLINE;
    let r = loop {
        tokio::task::yield_now().await;
        if holder.is_finished() {
            // The probe held the only slot when the holder arrived: the holder was shed.
            holder = hold();
            continue;
        }
        let r = h.send(req(Method::GET, "/v1/nodes")).await;
        if r.status != StatusCode::OK {
            break r;
        }
        assert!(tokio::time::Instant::now() < end, "never shed");
    };
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(header(&r, "retry-after"), "1");
    // Liveness and metrics are not shed.
    assert_eq!(
        h.send(req(Method::GET, "/health")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.send(req(Method::GET, "/metrics")).await.status,
        StatusCode::OK
    );
    holder.abort();
    let _ = holder.await;
    wait_allowed(&h, || req(Method::GET, "/v1/flows")).await;
}

#[tokio::test]
async fn slow_requests_time_out_with_503() {
    let h = harness_with(ApiOptions {
        request_timeout: Duration::from_millis(50),
        ..ApiOptions::default()
    })
    .await;
    let stalled = req(Method::POST, "/v1/flows")
        .yaml("")
        .build(stalled_body());
    let resp = h.app.clone().oneshot(stalled).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
}

#[tokio::test]
async fn a_served_router_limits_by_the_socket_peer() {
    let h = harness_with(tight(Some("3/s".parse().unwrap()), None)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h
        .app
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/flows");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = client.get(&url).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            assert_eq!(r.headers()["ratelimit-limit"], "3");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    // The oneshot requests above came from no socket: a different bucket.
    let r = h.send(req(Method::GET, "/v1/flows")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    server.abort();
}

#[tokio::test]
async fn forwarded_for_is_trusted_only_when_configured() {
    let one = Some("1/s".parse().unwrap());
    let send = |h: &Harness, xff: &'static str| {
        let r = req(Method::GET, "/v1/nodes")
            .ip("127.0.0.1")
            .build(Body::empty());
        let (mut parts, body) = r.into_parts();
        parts
            .headers
            .insert("x-forwarded-for", xff.parse().unwrap());
        h.app.clone().oneshot(Request::from_parts(parts, body))
    };
    // Not trusted: both requests come from the socket peer, one bucket.
    let h = harness_with(tight(one, None)).await;
    assert_eq!(send(&h, "10.0.0.1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        send(&h, "10.0.0.2").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Trusted: the proxy's entry names the client, one bucket each.
    let h = harness_with(ApiOptions {
        trust_proxy: true,
        ..tight(one, None)
    })
    .await;
    assert_eq!(send(&h, "10.0.0.1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(send(&h, "10.0.0.2").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        send(&h, "9.9.9.9, 10.0.0.1").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
