//! Schedules through the API: bad documents are refused naming the field at fault, and a
//! schedule reads back with its next fire times.

use super::*;

const FLOW: &str = "name: report\nnodes:\n  a: {type: noop}\n";

async fn apply(h: &Harness, text: &str) -> Resp {
    let ct = [("content-type", "application/yaml")];
    h.send(Method::POST, "/v1/schedules", &ct, text.to_string())
        .await
}

async fn post(h: &Harness, uri: &str) -> Resp {
    h.send(Method::POST, uri, &[], Body::empty()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cron_and_unknown_zone_are_refused_naming_the_part() {
    let h = harness().await;
    assert_eq!(h.yaml(FLOW).await.status, StatusCode::CREATED);
    let r = apply(&h, "name: s\nflow: report\ncron: '0 61 * * * *'\n").await;
    let err = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "schedule_invalid");
    assert_eq!(err["details"][0]["path"], "cron", "{err}");
    let msg = err["details"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("minute field \"61\" is out of range 0-59"),
        "{msg}"
    );

    let r = apply(
        &h,
        "name: s\nflow: report\ncron: '* * * * *'\ntimezone: Europe/Pariss\n",
    )
    .await;
    let err = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "schedule_invalid");
    assert_eq!(err["details"][0]["path"], "timezone", "{err}");
    let msg = err["details"][0]["message"].as_str().unwrap();
    assert!(msg.contains("did you mean Europe/Paris?"), "{msg}");

    let r = apply(
        &h,
        "name: s\nflow: report\ncron: '* * * * *'\nmisfire: {catch_up: 0}\n",
    )
    .await;
    let err = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "schedule_invalid");
    assert_eq!(err["details"][0]["path"], "misfire.catch_up", "{err}");

    let r = apply(&h, "name: s\nflow: nope\ncron: '* * * * *'\n").await;
    let err = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "schedule_invalid");
    assert_eq!(err["details"][0]["path"], "flow", "{err}");

    let r = h.get("/v1/schedules/s").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_reads_back_with_its_next_fire_times_and_can_be_managed() {
    let h = harness().await;
    assert_eq!(h.yaml(FLOW).await.status, StatusCode::CREATED);
    let doc = "name: nightly\nflow: report\ncron: '0 30 2 * * *'\ntimezone: Europe/Berlin\npaused: true\n";
    let r = apply(&h, doc).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = apply(&h, doc).await;
    assert_eq!(r.status, StatusCode::OK, "replaced: {}", r.body);

    let r = post(&h, "/v1/schedules/nightly/resume").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["spec"]["paused"], false);
    let r = h.get("/v1/schedules/nightly?next=5").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let next: Vec<i64> = r.body["upcoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(next.len(), 5);
    assert_eq!(r.body["next_fire_at"].as_i64(), Some(next[0]));
    // Daily at 02:30 Berlin time: 30 minutes past an hour UTC, roughly a day apart.
    for w in next.windows(2) {
        assert!(
            [82_800_000, 86_400_000, 90_000_000].contains(&(w[1] - w[0])),
            "{next:?}"
        );
    }
    assert!(next.iter().all(|t| t % 3_600_000 == 1_800_000), "{next:?}");
    let r = h.get("/v1/schedules/nightly?next=101").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");

    let r = post(&h, "/v1/schedules/nightly/trigger").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let run = r.body["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        h.get(&format!("/v1/runs/{run}")).await.status,
        StatusCode::OK
    );

    let r = post(&h, "/v1/schedules/nightly/pause").await;
    assert_eq!(r.body["spec"]["paused"], true, "{}", r.body);
    let r = h.get("/v1/schedules").await;
    assert_eq!(
        r.body["schedules"][0]["spec"]["name"], "nightly",
        "{}",
        r.body
    );
    let r = h
        .send(Method::DELETE, "/v1/schedules/nightly", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = post(&h, "/v1/schedules/nightly/pause").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}
