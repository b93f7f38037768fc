//! A real HTTP/1.1 server on loopback for the tests: each request is answered by a closure
//! (status, body, delay) and logged, so tests can count what the generator sent and where.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What the server answers.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub location: Option<String>,
}

pub fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        body: body.into(),
        delay: Duration::ZERO,
        location: None,
    }
}

type Handler = dyn Fn(&str, &str) -> Reply + Send + Sync;

/// A running test server; stops when dropped.
pub struct TestServer {
    pub url: String,
    pub log: Arc<Mutex<Vec<(String, String)>>>,
    /// The `Authorization` header of every request, in order (empty when absent).
    pub auth: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let auth: Arc<Mutex<Vec<String>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let (l2, h2, a2) = (log.clone(), handler.clone(), auth.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, handler, auth) = (l2.clone(), h2.clone(), a2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (log, handler, auth) = (log.clone(), handler.clone(), auth.clone());
                        async move {
                            let a = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok());
                            auth.lock().push(a.unwrap_or_default().to_string());
                            let method = req.method().to_string();
                            let path = req.uri().to_string();
                            log.lock().push((method.clone(), path.clone()));
                            let r = handler(&method, &path);
                            if !r.delay.is_zero() {
                                tokio::time::sleep(r.delay).await;
                            }
                            let mut resp = Response::builder().status(r.status);
                            if let Some(l) = &r.location {
                                resp = resp.header("location", l);
                            }
                            Ok::<_, Infallible>(resp.body(Full::new(Bytes::from(r.body))).unwrap())
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            url,
            log,
            auth,
            task,
        }
    }

    /// Requests to paths starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.log
            .lock()
            .iter()
            .filter(|(_, p)| p.starts_with(prefix))
            .count()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A weft-like server: healthy, knows flow `hello`, starts runs that finish at once.
pub async fn fake_weft(delay: Duration) -> TestServer {
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    TestServer::start(move |method, path| {
        let mut r = match (method, path) {
            (_, "/health") => reply(200, "ok"),
            ("GET", "/v1/flows/hello") => reply(200, r#"{"name":"hello"}"#),
            ("GET", p) if p.starts_with("/v1/flows/") => {
                reply(404, r#"{"error":{"code":"not_found"}}"#)
            }
            ("POST", "/v1/runs") => {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                reply(201, &format!(r#"{{"id":"run-{i}","created":true}}"#))
            }
            ("GET", p) if p.starts_with("/v1/runs/") => reply(
                200,
                r#"{"id":"x","state":"succeeded","created_at":1000,"finished_at":1042}"#,
            ),
            ("GET", p) if p.starts_with("/v1/runs") => reply(200, r#"{"runs":[]}"#),
            ("GET", "/metrics") => reply(
                200,
                "weft_queue_depth{queue=\"default\"} 5\nweft_attempts_inflight 2\n",
            ),
            _ => reply(404, "{}"),
        };
        r.delay = delay;
        r
    })
    .await
}
