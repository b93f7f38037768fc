//! `/v1/events`: live run and node events over SSE and WebSocket.
//!
//! Both transports read the engine's event log through a [`Subscription`], so they share
//! its guarantees: events arrive in `seq` order; resuming after seq N (`Last-Event-ID` or
//! `?since=N`) delivers every retained event after N exactly once, then live ones; a
//! resumption the buffer cannot honour starts with a `gap` message naming the first seq
//! delivered; and a subscriber that falls too far behind is ended with a `slow_consumer`
//! reason rather than slowing the engine.

use crate::error::ApiError;
use crate::extract::ApiQuery;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use weft_engine::events::{EventKind, Gap, Lagged};
use weft_engine::{Engine, EventFilter, LiveEvent, Subscription};

/// How often an idle SSE stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Query of `GET /v1/events` and `GET /v1/events/ws`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Only this run's events.
    run: Option<String>,
    /// Only runs of this flow.
    flow: Option<String>,
    /// Comma-separated kinds: `run`, `node` (default both).
    types: Option<String>,
    /// Resume after this seq (like `Last-Event-ID`).
    since: Option<u64>,
}

impl EventsQuery {
    /// The filter and the seq to resume after (the `Last-Event-ID` header wins over `since`).
    fn parse(self, headers: &HeaderMap) -> Result<(EventFilter, Option<u64>), ApiError> {
        let mut kinds = Vec::new();
        for t in self.types.as_deref().unwrap_or("").split(',') {
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            let kind = EventKind::parse(t).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown event type {t:?}; expected run, node or both (types=run,node)"
                ))
            })?;
            kinds.push(kind);
        }
        let after = match headers.get("last-event-id") {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        ApiError::bad_request("Last-Event-ID must be an event seq (a number)")
                    })?,
            ),
            None => self.since,
        };
        let filter = EventFilter {
            run: self.run,
            flow: self.flow,
            kinds,
        };
        Ok((filter, after))
    }
}

/// What a stream delivers next.
enum Item {
    Gap(Gap),
    Event(Arc<LiveEvent>),
    Lagged(Lagged),
}

/// A subscription with a small read-ahead, turned into one item at a time.
struct Feed {
    sub: Subscription,
    pending: VecDeque<Arc<LiveEvent>>,
    buf: Vec<Arc<LiveEvent>>,
    done: bool,
}

impl Feed {
    fn new(sub: Subscription) -> Self {
        Self {
            sub,
            pending: VecDeque::new(),
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next item; None after a lag was reported.
    async fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        if let Some(gap) = self.sub.take_gap() {
            return Some(Item::Gap(gap));
        }
        if let Some(ev) = self.pending.pop_front() {
            return Some(Item::Event(ev));
        }
        match self.sub.next_batch(&mut self.buf).await {
            Ok(()) => {
                self.pending.extend(self.buf.drain(..));
                self.pending.pop_front().map(Item::Event)
            }
            Err(lag) => {
                self.done = true;
                Some(Item::Lagged(lag))
            }
        }
    }
}

fn gap_json(gap: Gap) -> serde_json::Value {
    json!({ "requested": gap.requested, "first_available": gap.first_available,
            "message": "events were missed; re-read the state you follow with GET, then continue" })
}

fn lag_json(lag: Lagged) -> serde_json::Value {
    json!({ "code": "slow_consumer", "message": lag.to_string(), "behind": lag.behind })
}

/// `GET /v1/events?run=&flow=&types=run,node&since=`: a `text/event-stream` of live
/// events; each has `id: <seq>`, `event: run|node` and the event as JSON `data`.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("run" = Option<String>, Query, description = "Only this run's events"),
        ("flow" = Option<String>, Query, description = "Only runs of this flow"),
        ("types" = Option<String>, Query, description = "Comma-separated: run, node (default both)"),
        ("since" = Option<u64>, Query, description = "Resume after this seq (like Last-Event-ID)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `run`, `node`, `gap`, `error`", content_type = "text/event-stream", body = crate::openapi::SseEventDoc),
        (status = 400, body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn sse(
    State(engine): State<Engine>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let (filter, after) = q.parse(&headers)?;
    let feed = Feed::new(engine.watch(after, filter));
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let event = match feed.next().await? {
            Item::Event(ev) => SseEvent::default()
                .id(ev.seq.to_string())
                .event(ev.kind().as_str())
                .json_data(&*ev)
                .unwrap_or_else(|_| SseEvent::default().comment("unencodable event")),
            Item::Gap(gap) => SseEvent::default()
                .event("gap")
                .data(gap_json(gap).to_string()),
            Item::Lagged(lag) => SseEvent::default()
                .event("error")
                .data(lag_json(lag).to_string()),
        };
        Some((Ok(event), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// `GET /v1/events/ws?run=&flow=&types=&since=`: the same events as JSON text messages
/// (plus `{"kind": "gap", ...}`); a slow consumer is closed with code 1008.
#[utoipa::path(get, path = "/v1/events/ws", tag = "events",
    params(
        ("run" = Option<String>, Query, description = "Only this run's events"),
        ("flow" = Option<String>, Query, description = "Only runs of this flow"),
        ("types" = Option<String>, Query, description = "Comma-separated: run, node (default both)"),
        ("since" = Option<u64>, Query, description = "Resume after this seq"),
    ),
    responses(
        (status = 101, description = "Switching to WebSocket"),
        (status = 400, body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn ws(
    State(engine): State<Engine>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let (filter, after) = q.parse(&headers)?;
    // Without this, axum answers a plain GET with a text/plain 400.
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!("this endpoint speaks WebSocket: {}", e.body_text()))
    })?;
    let sub = engine.watch(after, filter);
    Ok(upgrade
        .on_upgrade(move |socket| serve_ws(socket, Feed::new(sub)))
        .into_response())
}

async fn serve_ws(mut socket: WebSocket, mut feed: Feed) {
    loop {
        let item = tokio::select! {
            item = feed.next() => item,
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue, // pings are answered by the library
            },
        };
        let text = match item {
            Some(Item::Event(ev)) => serde_json::to_string(&*ev).unwrap_or_default(),
            Some(Item::Gap(gap)) => {
                let mut v = gap_json(gap);
                v["kind"] = json!("gap");
                v.to_string()
            }
            Some(Item::Lagged(lag)) => {
                let frame = CloseFrame {
                    code: close_code::POLICY,
                    reason: lag.to_string().into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
            None => return,
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
}
