//! Upstream connections of one data-path thread: pooled HTTP/1.1 connections and one
//! multiplexed HTTP/2 connection per endpoint, each made with the route's connect timeout;
//! fresh connections for upgrades (WebSocket, CONNECT), which are tunnelled only once the
//! upstream has answered 101 (or 2xx to a CONNECT).
//!
//! An endpoint that is a workload on another node is reached through an HBONE tunnel
//! (`hbone/client.rs`) as the source workload: its pooled connections are kept apart per
//! source identity, since each carries that identity.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::hbone::{Counted, MeshTls, Stats, TunnelTo, Tunnels};
use super::phase::Peer;
use super::state::State;

/// A byte stream to an upstream: a TCP socket, or a tunnel's stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}
pub type BoxedIo = Box<dyn Io>;

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

/// How an endpoint is reached.
pub enum Via {
    /// TCP to its address.
    Direct,
    /// An HBONE tunnel to it, as a local workload.
    Tunnel(Tunnel),
}

pub struct Tunnel {
    mesh: Arc<MeshTls>,
    /// The source workload's SPIFFE ID, presented in the tunnel's TLS.
    source: String,
    source_ip: IpAddr,
    /// The workload's IP at its node's HBONE port.
    via: SocketAddr,
    /// The destination workload's SPIFFE ID, which the server must present.
    expect: String,
}

/// The stable code of a refusal to tunnel traffic that has no local source workload.
pub const NO_SOURCE_IDENTITY: &str = "AMBIT_ERR_NO_SOURCE_IDENTITY";

impl Via {
    /// Direct, unless `ep` is a workload on another node (mesh config `nodes`, with
    /// `identity` set): then through HBONE as the source workload, which must be one of
    /// this node's.
    pub fn for_destination(state: &State, mesh: Option<&Arc<MeshTls>>, source: &Peer, ep: SocketAddr) -> Result<Via, UpstreamError> {
        let Some((hbone_port, expect)) = state.tunnelled(ep.ip()) else { return Ok(Via::Direct) };
        let Some(mesh) = mesh else {
            return Err(UpstreamError::new("connect-failure", format!("{ep} is a workload on another node, reached over mTLS, and this node has no mesh certificates yet")));
        };
        let (Some(source_id), Ok(source_ip)) = (source.identity.as_ref(), source.address.parse::<IpAddr>()) else {
            return Err(UpstreamError::new(
                "connect-failure",
                format!("{NO_SOURCE_IDENTITY}: {} is not a workload of this node, so its traffic to {ep} on another node cannot be sent over mTLS (the tunnel presents the source workload's certificate); add the client to the mesh config's workloads on this node", source.address),
            ));
        };
        Ok(Via::Tunnel(Tunnel { mesh: mesh.clone(), source: source_id.clone(), source_ip, via: SocketAddr::new(ep.ip(), hbone_port), expect: expect.to_string() }))
    }
}

/// Pooled connections are shared by requests to the same address over the same path.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: SocketAddr,
    /// Tunnelled: the source identity and the certificate generation the tunnel was made with.
    tunnel: Option<(String, u64)>,
}

impl PoolKey {
    fn new(addr: SocketAddr, via: &Via) -> Self {
        PoolKey { addr, tunnel: match via { Via::Direct => None, Via::Tunnel(t) => Some((t.source.clone(), t.mesh.generation)) } }
    }
}

/// Most idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

pub struct Pools {
    h1: Mutex<HashMap<PoolKey, Vec<http1::SendRequest<Body>>>>,
    h2: Mutex<HashMap<PoolKey, http2::SendRequest<Body>>>,
    /// HBONE sessions to other nodes.
    pub tunnels: Tunnels,
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
    pub fn new(hbone: Arc<Stats>) -> Self {
        Pools { h1: Mutex::new(HashMap::new()), h2: Mutex::new(HashMap::new()), tunnels: Tunnels::new(hbone) }
    }

    /// A byte stream to `addr`, directly or through its tunnel.
    pub async fn connect(&self, addr: SocketAddr, via: &Via, timeout_ms: u64) -> Result<BoxedIo, UpstreamError> {
        match via {
            Via::Direct => Ok(Box::new(connect(addr, timeout_ms).await?)),
            Via::Tunnel(t) => {
                let to = TunnelTo { target: addr, via: t.via, expect: &t.expect };
                let stream = self.tunnels.open(&t.mesh, &t.source, t.source_ip, to, timeout_ms).await?;
                Ok(Box::new(Counted::outbound(TokioIo::new(stream), &self.tunnels.stats)))
            }
        }
    }

    fn idle_h1(&self, key: &PoolKey) -> Option<http1::SendRequest<Body>> {
        let mut map = self.h1.lock().unwrap();
        let list = map.get_mut(key)?;
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

    fn put_h1(&self, key: PoolKey, sender: http1::SendRequest<Body>) {
        let mut map = self.h1.lock().unwrap();
        let list = map.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(sender);
        }
    }

    async fn h2(&self, key: PoolKey, via: &Via, connect_timeout_ms: u64) -> Result<http2::SendRequest<Body>, UpstreamError> {
        if let Some(s) = self.h2.lock().unwrap().get(&key) {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let io = TokioIo::new(self.connect(key.addr, via, connect_timeout_ms).await?);
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(io)
            .await
            .map_err(reset)?;
        tokio::spawn(conn);
        self.h2.lock().unwrap().insert(key, sender.clone());
        Ok(sender)
    }

    /// Sends one attempt; the response's body streams from the pooled connection.
    pub async fn send(&self, addr: SocketAddr, via: &Via, wire: Wire, req: Request<Body>, connect_timeout_ms: u64) -> Result<Response<Incoming>, UpstreamError> {
        let key = PoolKey::new(addr, via);
        match wire {
            Wire::Http2 => {
                let mut s = self.h2(key, via, connect_timeout_ms).await?;
                s.ready().await.map_err(reset)?;
                s.send_request(req).await.map_err(reset)
            }
            Wire::Http1 => {
                let mut sender = match self.idle_h1(&key) {
                    Some(s) => s,
                    None => {
                        let io = TokioIo::new(self.connect(addr, via, connect_timeout_ms).await?);
                        let (sender, conn) = http1::Builder::new().handshake(io).await.map_err(reset)?;
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        sender
                    }
                };
                let res = sender.send_request(req).await.map_err(reset)?;
                // Back to the pool now: it is taken again only once `is_ready` (the response is read).
                self.put_h1(key, sender);
                Ok(res)
            }
        }
    }
}

/// An upgrade (WebSocket, CONNECT) on a connection of its own: the upstream's answer, with
/// the connection kept for the tunnel when it is 101 (or 2xx to a CONNECT).
pub async fn send_upgrade(pools: &Pools, addr: SocketAddr, via: &Via, req: Request<Body>, connect_timeout_ms: u64) -> Result<Response<Incoming>, UpstreamError> {
    let io = TokioIo::new(pools.connect(addr, via, connect_timeout_ms).await?);
    let (mut sender, conn) = http1::Builder::new().handshake(io).await.map_err(reset)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender.send_request(req).await.map_err(reset)
}
