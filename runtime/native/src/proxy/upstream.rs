//! Upstream connections of one data-path thread: pooled HTTP/1.1 connections and one
//! multiplexed HTTP/2 connection per endpoint, each made with the route's connect timeout;
//! fresh connections for upgrades (WebSocket, CONNECT), which are tunnelled only once the
//! upstream has answered 101 (or 2xx to a CONNECT).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// Why an attempt got no upstream response (`x-ambit-upstream-error`, the filters' `upstream-error`).
#[derive(Debug, Clone)]
pub struct UpstreamError {
    pub kind: &'static str,
    pub message: String,
}

impl UpstreamError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        UpstreamError { kind, message: message.into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Http1,
    Http2,
}

/// Most idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

#[derive(Default)]
pub struct Pools {
    h1: Mutex<HashMap<SocketAddr, Vec<http1::SendRequest<Body>>>>,
    h2: Mutex<HashMap<SocketAddr, http2::SendRequest<Body>>>,
}

async fn connect(addr: SocketAddr, timeout_ms: u64) -> Result<TcpStream, UpstreamError> {
    let dial = TcpStream::connect(addr);
    let stream = if timeout_ms > 0 {
        match tokio::time::timeout(Duration::from_millis(timeout_ms), dial).await {
            Ok(r) => r,
            Err(_) => return Err(UpstreamError::new("connect-timeout", format!("connect to {addr} timed out after {timeout_ms} ms"))),
        }
    } else {
        dial.await
    }
    .map_err(|e| UpstreamError::new("connect-failure", format!("connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn reset(e: hyper::Error) -> UpstreamError {
    let kind = if e.is_timeout() { "timeout" } else if e.is_parse() || e.is_user() { "protocol-error" } else { "reset" };
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    UpstreamError::new(kind, msg)
}

impl Pools {
    fn idle_h1(&self, addr: SocketAddr) -> Option<http1::SendRequest<Body>> {
        let mut map = self.h1.lock().unwrap();
        let list = map.get_mut(&addr)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if list[i].is_closed() {
                list.swap_remove(i);
            } else if list[i].is_ready() {
                return Some(list.swap_remove(i));
            }
        }
        None
    }

    fn put_h1(&self, addr: SocketAddr, sender: http1::SendRequest<Body>) {
        let mut map = self.h1.lock().unwrap();
        let list = map.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(sender);
        }
    }

    async fn h2(&self, addr: SocketAddr, connect_timeout_ms: u64) -> Result<http2::SendRequest<Body>, UpstreamError> {
        if let Some(s) = self.h2.lock().unwrap().get(&addr) {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let io = TokioIo::new(connect(addr, connect_timeout_ms).await?);
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(io)
            .await
            .map_err(reset)?;
        tokio::spawn(conn);
        self.h2.lock().unwrap().insert(addr, sender.clone());
        Ok(sender)
    }

    /// Sends one attempt; the response's body streams from the pooled connection.
    pub async fn send(&self, addr: SocketAddr, wire: Wire, req: Request<Body>, connect_timeout_ms: u64) -> Result<Response<Incoming>, UpstreamError> {
        match wire {
            Wire::Http2 => {
                let mut s = self.h2(addr, connect_timeout_ms).await?;
                s.ready().await.map_err(reset)?;
                s.send_request(req).await.map_err(reset)
            }
            Wire::Http1 => {
                let mut sender = match self.idle_h1(addr) {
                    Some(s) => s,
                    None => {
                        let io = TokioIo::new(connect(addr, connect_timeout_ms).await?);
                        let (sender, conn) = http1::Builder::new().handshake(io).await.map_err(reset)?;
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        sender
                    }
                };
                let res = sender.send_request(req).await.map_err(reset)?;
                // Back to the pool now: it is taken again only once `is_ready` (the response is read).
                self.put_h1(addr, sender);
                Ok(res)
            }
        }
    }
}

/// An upgrade (WebSocket, CONNECT) on a connection of its own: the upstream's answer, with
/// the connection kept for the tunnel when it is 101 (or 2xx to a CONNECT).
pub async fn send_upgrade(addr: SocketAddr, req: Request<Body>, connect_timeout_ms: u64) -> Result<Response<Incoming>, UpstreamError> {
    let io = TokioIo::new(connect(addr, connect_timeout_ms).await?);
    let (mut sender, conn) = http1::Builder::new().handshake(io).await.map_err(reset)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender.send_request(req).await.map_err(reset)
}

/// Plain TCP to an endpoint, for L4.
pub async fn connect_tcp(addr: SocketAddr, timeout_ms: u64) -> Result<TcpStream, UpstreamError> {
    connect(addr, timeout_ms).await
}
