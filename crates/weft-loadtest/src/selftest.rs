//! Measures the generator itself: a trivial HTTP/1.1 server on loopback in this process
//! answers every request with a fixed 200, and the generator drives it at a fixed rate.
//! What the report then shows is the generator's ceiling: its achieved throughput, and its
//! own overhead as the send lag (intended send time -> request handed to its connection).

use crate::report::Report;
use crate::scenario::{Phase, Scenario, Step, StepKind, WaitOptions};
use crate::{LoadtestError, RunOptions, Target};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// A static endpoint on 127.0.0.1 (a free port) until the returned handle is dropped.
pub struct StaticServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl StaticServer {
    /// Starts the server; every request gets `200 ok`.
    pub async fn start() -> Result<Self, LoadtestError> {
        let listener =
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| LoadtestError::Io {
                    context: "cannot listen on 127.0.0.1".into(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| LoadtestError::Io {
            context: "no local address".into(),
            source,
        })?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The scenario the self test runs: `GET /health` at `rate` for `duration`.
pub fn scenario(
    rate: f64,
    duration: Duration,
    connections: usize,
) -> Result<Scenario, LoadtestError> {
    let s = Scenario {
        name: "self-test".into(),
        connections,
        max_in_flight: (connections * 16).max(1024),
        timeout: Duration::from_secs(5),
        abort_after: Duration::from_secs(5),
        steps: vec![Step {
            name: "static".into(),
            kind: StepKind::Request,
            weight: 1,
            flow: None,
            input: None,
            wait: false,
            limit: None,
            method: None,
            path: Some("/health".into()),
            body: None,
        }],
        phases: vec![Phase::steady(rate, duration)],
        slo: Vec::new(),
        wait: WaitOptions::default(),
    };
    s.validate()?;
    Ok(s)
}

/// Runs the self test: a static server and the generator in this process.
pub async fn run(
    rate: f64,
    duration: Duration,
    connections: usize,
    opts: &RunOptions,
) -> Result<Report, LoadtestError> {
    let server = StaticServer::start().await?;
    let target = Target::new(&server.url(), None)?;
    let report = crate::run(&target, &scenario(rate, duration, connections)?, opts).await;
    drop(server);
    report
}
