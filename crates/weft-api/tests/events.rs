//! Live events end to end: a real engine on a SQLite store in a temp dir, the router served
//! on a real socket (127.0.0.1:0), read over SSE with reqwest and over WebSocket with
//! tokio-tungstenite. Every read has a deadline; nothing sleeps.

use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use weft_engine::{Engine, EngineConfig, EventFilter, StartRun};

const DEADLINE: Duration = Duration::from_secs(10);

const CHAIN: &str = "
name: chain3
nodes:
  a: {type: noop}
  b: {type: noop, needs: [a]}
  c: {type: noop, needs: [b]}
";

const ONE: &str = "name: one\nnodes:\n  work: {type: noop}\n";

struct Server {
    base: String,
    engine: Engine,
    _dir: tempfile::TempDir,
}

async fn server(config: EngineConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = weft_store_sqlite::SqliteStore::open(dir.path(), Default::default()).unwrap();
    let engine = Engine::start(store, config).await.unwrap();
    engine.flow_apply(CHAIN).await.unwrap();
    engine.flow_apply(ONE).await.unwrap();
    let app = weft_api::router(engine.clone(), Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base: format!("127.0.0.1:{}", addr.port()),
        engine,
        _dir: dir,
    }
}

impl Server {
    async fn start(&self, flow: &str) -> String {
        let req = StartRun {
            flow: flow.into(),
            ..Default::default()
        };
        self.engine.run_start(req).await.unwrap().id
    }

    async fn finish(&self, id: &str) {
        tokio::time::timeout(DEADLINE, self.engine.wait_run(id))
            .await
            .expect("run finishes in time")
            .unwrap();
    }
}

/// One SSE message.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: Option<u64>,
    event: String,
    data: Value,
}

struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(s: &Server, query: &str, last_id: Option<u64>) -> Sse {
        let mut req = reqwest::Client::new().get(format!("http://{}/v1/events?{query}", s.base));
        if let Some(id) = last_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next message (keep-alive comments skipped); None when the stream ends.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut frame = Frame {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        frame.id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        frame.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment
                }
                frame.data = serde_json::from_str(&data).unwrap();
                return Some(frame);
            }
            let chunk = tokio::time::timeout(DEADLINE, self.resp.chunk())
                .await
                .expect("an SSE message in time")
                .unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Messages up to and including the first that `last` accepts.
    async fn until(&mut self, last: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            let f = self.next().await.expect("stream ended early");
            let done = last(&f);
            out.push(f);
            if done {
                return out;
            }
        }
    }
}

fn run_ended(run: &str) -> impl Fn(&Frame) -> bool + '_ {
    move |f| f.event == "run" && f.data["run_id"] == run && f.data["state"] == "succeeded"
}

/// `(kind, node or "", state)` of each event.
fn story(frames: &[Frame]) -> Vec<(String, String, String)> {
    frames
        .iter()
        .map(|f| {
            (
                f.event.clone(),
                f.data["node"].as_str().unwrap_or("").to_string(),
                f.data["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expected_chain() -> Vec<(String, String, String)> {
    let mut v = vec![("run", "", "created"), ("node", "a", "ready")];
    v.push(("run", "", "started"));
    for (node, next) in [("a", Some("b")), ("b", Some("c")), ("c", None)] {
        v.push(("node", node, "running"));
        v.push(("node", node, "succeeded"));
        if let Some(n) = next {
            v.push(("node", n, "ready"));
        }
    }
    v.push(("run", "", "succeeded"));
    v.into_iter()
        .map(|(a, b, c)| (a.into(), b.into(), c.into()))
        .collect()
}

#[tokio::test]
async fn node_and_run_events_arrive_in_order() {
    let s = server(EngineConfig::default()).await;
    let mut sse = Sse::open(&s, "flow=chain3", None).await;
    let id = s.start("chain3").await;
    let frames = sse.until(run_ended(&id)).await;
    assert_eq!(story(&frames), expected_chain());
    for w in frames.windows(2) {
        assert!(w[0].id.unwrap() < w[1].id.unwrap(), "seqs increase");
    }
    let first = &frames[0].data;
    assert_eq!(first["seq"].as_u64(), frames[0].id);
    assert_eq!(first["kind"], "run");
    assert_eq!(first["run_id"], id.as_str());
    assert_eq!(first["flow"], "chain3");
    assert!(first["at"].as_i64().unwrap() > 0);
    let running = &frames[3].data;
    assert_eq!(
        (running["node"].as_str(), running["attempt"].as_u64()),
        (Some("a"), Some(1))
    );
}

#[tokio::test]
async fn filters_by_run_and_type_exclude_other_events() {
    let s = server(EngineConfig::default()).await;
    let (x, y) = (s.start("chain3").await, s.start("chain3").await);
    s.finish(&x).await;
    s.finish(&y).await;
    let mut sse = Sse::open(&s, &format!("run={x}&since=0"), None).await;
    let frames = sse.until(run_ended(&x)).await;
    assert_eq!(story(&frames), expected_chain());
    assert!(frames.iter().all(|f| f.data["run_id"] == x.as_str()));

    let mut runs_only = Sse::open(&s, &format!("run={y}&types=run&since=0"), None).await;
    let frames = runs_only.until(run_ended(&y)).await;
    let states: Vec<_> = frames.iter().map(|f| f.data["state"].clone()).collect();
    assert_eq!(states, ["created", "started", "succeeded"]);
    assert!(frames.iter().all(|f| f.event == "run"));

    let resp = reqwest::get(format!("http://{}/v1/events?types=task", s.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn last_event_id_resumes_with_exactly_the_missed_events() {
    let s = server(EngineConfig::default()).await;
    let mut full = Sse::open(&s, "flow=chain3&since=0", None).await;
    let mut partial = Sse::open(&s, "flow=chain3", None).await;
    let id = s.start("chain3").await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(partial.next().await.unwrap());
    }
    drop(partial);
    s.finish(&id).await;
    let all = full.until(run_ended(&id)).await;
    let third = seen[2].id.unwrap();
    assert_eq!(seen[..], all[..3]);

    let mut resumed = Sse::open(&s, "flow=chain3", Some(third)).await;
    let rest = resumed.until(run_ended(&id)).await;
    assert_eq!(rest[..], all[3..], "no gaps, no duplicates");
    // `since` does the same as the header.
    let mut by_query = Sse::open(&s, &format!("flow=chain3&since={third}"), None).await;
    assert_eq!(by_query.until(run_ended(&id)).await, rest);
}

#[tokio::test]
async fn since_older_than_the_buffer_starts_with_a_gap() {
    let config = EngineConfig {
        event_buffer: 5,
        ..Default::default()
    };
    let s = server(config).await;
    let id = s.start("chain3").await;
    s.finish(&id).await;
    let last = s.engine.event_log().last_seq();
    assert_eq!(last, 12, "twelve events for a three-node run");
    let mut sse = Sse::open(&s, "since=1", None).await;
    let gap = sse.next().await.unwrap();
    assert_eq!(gap.event, "gap");
    assert_eq!(gap.id, None, "a gap does not move the client's last id");
    assert_eq!(gap.data["requested"], 1);
    assert_eq!(gap.data["first_available"], last - 4);
    let rest = sse.until(run_ended(&id)).await;
    let ids: Vec<u64> = rest.iter().map(|f| f.id.unwrap()).collect();
    assert_eq!(ids, (last - 4..=last).collect::<Vec<_>>());
}

async fn ws_connect(s: &Server, query: &str) -> WsStream {
    let url = format!("ws://{}/v1/events/ws?{query}", s.base);
    let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap();
    ws
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_next(ws: &mut WsStream) -> Option<Message> {
    tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("a WebSocket message in time")
        .map(|m| m.unwrap())
}

#[tokio::test]
async fn a_websocket_client_gets_the_same_events() {
    let s = server(EngineConfig::default()).await;
    let id = s.start("chain3").await;
    s.finish(&id).await;
    let mut sse = Sse::open(&s, &format!("run={id}&since=0"), None).await;
    let frames = sse.until(run_ended(&id)).await;

    let mut ws = ws_connect(&s, &format!("run={id}&since=0")).await;
    let mut got = Vec::new();
    while got.len() < frames.len() {
        match ws_next(&mut ws).await.expect("socket open") {
            Message::Text(t) => got.push(serde_json::from_str::<Value>(&t).unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let want: Vec<Value> = frames.into_iter().map(|f| f.data).collect();
    assert_eq!(got, want);
}

/// Starts `n` one-node runs in one batch: one publication of 2n events.
async fn burst(s: &Server, n: usize) -> Vec<String> {
    let reqs = (0..n)
        .map(|_| StartRun {
            flow: "one".into(),
            ..Default::default()
        })
        .collect();
    let created = s.engine.run_start_many(reqs).await.unwrap();
    created.into_iter().map(|r| r.unwrap().id).collect()
}

#[tokio::test]
async fn a_slow_consumer_is_dropped_while_the_engine_and_others_go_on() {
    let config = EngineConfig {
        event_subscriber_lag: 4,
        ..Default::default()
    };
    let s = server(config).await;
    let mut slow_sse = Sse::open(&s, "", None).await;
    let mut slow_ws = ws_connect(&s, "").await;
    // Another subscriber with room enough, reading in process.
    let mut other = s
        .engine
        .event_log()
        .subscribe(None, EventFilter::default(), 1 << 20);

    let ids = burst(&s, 20).await;
    for id in &ids {
        s.finish(id).await;
    }
    let mut finished = 0;
    let mut buf = Vec::new();
    while finished < ids.len() {
        tokio::time::timeout(DEADLINE, other.next_batch(&mut buf))
            .await
            .unwrap()
            .expect("the roomy subscriber keeps up");
        finished += buf
            .drain(..)
            .filter(|e| {
                serde_json::to_value(&**e).unwrap()["state"] == "succeeded"
                    && e.kind() == weft_engine::events::EventKind::Run
            })
            .count();
    }

    // Now read the slow ones: whatever they got, then the reason they were dropped.
    let mut last = None;
    while let Some(f) = slow_sse.next().await {
        last = Some(f);
    }
    let last = last.expect("an error message before the end");
    assert_eq!(last.event, "error");
    assert_eq!(last.data["code"], "slow_consumer");
    assert!(
        last.data["message"]
            .as_str()
            .unwrap()
            .starts_with("slow consumer: fell ")
    );

    let close = loop {
        match ws_next(&mut slow_ws).await {
            Some(Message::Close(frame)) => break frame.expect("a close frame with a reason"),
            Some(_) => continue,
            None => panic!("socket ended without a close frame"),
        }
    };
    assert_eq!(u16::from(close.code), 1008);
    assert!(
        close.reason.starts_with("slow consumer: fell "),
        "{}",
        close.reason
    );
}
