//! A lean HTTP/1.1 client: one keep-alive connection per [`Conn`], hyper's low-level
//! `client::conn::http1` over a tokio `TcpStream`, no pool bookkeeping, no redirects, no
//! TLS. At 20,000 requests/s on two shared cores, a general-purpose client's per-request
//! overhead (pool locks, header maps, redirect policy) would be the bottleneck.

use crate::target::Target;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// A request that got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer within the timeout.
    Timeout,
    /// The connection could not be opened.
    Connect,
    /// The connection broke mid-request.
    Io,
}

impl Failure {
    /// The key in `by_status`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Io => "io",
        }
    }
}

/// An HTTP answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// One connection to the target, opened on first use and reopened after a failure.
pub(crate) struct Conn {
    addr: SocketAddr,
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened so far, for the report.
    pub(crate) connects: u64,
}

impl Conn {
    pub(crate) fn new(addr: SocketAddr, target: Arc<Target>) -> Self {
        Self {
            addr,
            target,
            sender: None,
            connects: 0,
        }
    }

    /// Sends one request to `path` on the target and reads the whole answer.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        match tokio::time::timeout(timeout, self.call_inner(method, path, body)).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(f)) => {
                self.sender = None;
                Err(f)
            }
            Err(_) => {
                // The connection may still carry the late answer; never reuse it.
                self.sender = None;
                Err(Failure::Timeout)
            }
        }
    }

    async fn call_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, Failure> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(self.open().await?);
        }
        let sender = self.sender.as_mut().ok_or(Failure::Connect)?;
        sender.ready().await.map_err(|_| Failure::Io)?;
        let mut req = Request::builder()
            .method(method)
            .uri(self.target.uri(path))
            .header(hyper::header::HOST, self.target.authority());
        if let Some(key) = self.target.api_key() {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| Failure::Io)?;
        let resp = sender.send_request(req).await.map_err(|_| Failure::Io)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Io)?
            .to_bytes();
        Ok(Answer { status, body })
    }

    async fn open(&mut self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|_| Failure::Connect)?;
        // Requests are small and latency is what is measured: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes; errors show up on the sender.
            let _ = conn.await;
        });
        self.connects += 1;
        Ok(sender)
    }
}
