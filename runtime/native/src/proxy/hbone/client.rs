//! The HBONE client: traffic for a workload on another node leaves in an HTTP/2 `CONNECT`
//! stream inside mutual TLS, as Istio's ztunnel sends it.
//!
//! - It dials `<destination workload IP>:<that node's HBONE port>` (15008), ALPN `h2`, no SNI,
//!   presenting the *source workload's* certificate, and accepts only a server whose SPIFFE
//!   ID is the destination workload's (`tls.rs`).
//! - `CONNECT <destination ip>:<port>` carries `forwarded: for=<source ip>` (RFC 7239) and a
//!   `traceparent`; the tunnel is the stream once the answer is 200.
//! - Sessions are pooled per (source identity, certificate generation, dialed address,
//!   expected server identity): many tunnels share one TLS connection. A session that is
//!   closed or was sent GOAWAY is dropped and a new one made; a tunnel refused on a reused
//!   session is tried once more on a fresh one.
//! - Flow control does not throttle: 4 MiB per stream and 16 MiB per connection (fixed:
//!   measured faster on a bulk stream than h2's adaptive window, which starts small).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::super::upstream::UpstreamError;
use super::stats::{Open, Stats};
use super::tls::MeshTls;
use super::{STREAM_WINDOW_BYTES, CONNECTION_WINDOW_BYTES, REASON_HEADER, forwarded_for};

#[derive(Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    source: String,
    generation: u64,
    via: SocketAddr,
    expect: String,
}

/// Where a tunnel goes.
pub struct TunnelTo<'a> {
    /// The workload address and port the traffic is for (`CONNECT`'s authority).
    pub target: SocketAddr,
    /// The address dialed: the workload's IP at its node's HBONE port.
    pub via: SocketAddr,
    /// The SPIFFE ID the server must present: the destination workload's.
    pub expect: &'a str,
}

/// One data-path thread's HBONE sessions.
pub struct Tunnels {
    sessions: Mutex<HashMap<SessionKey, http2::SendRequest<Empty<Bytes>>>>,
    pub stats: Arc<Stats>,
}

fn failure(kind: &'static str, message: String) -> UpstreamError {
    UpstreamError { kind, message }
}

impl Tunnels {
    pub fn new(stats: Arc<Stats>) -> Self {
        Tunnels { sessions: Mutex::new(HashMap::new()), stats }
    }

    /// Opens a tunnel as `source` (a local workload identity, whose traffic comes from
    /// `source_ip`); `timeout_ms` bounds TCP, TLS, HTTP/2 and the CONNECT's answer together.
    pub async fn open(&self, tls: &MeshTls, source: &str, source_ip: IpAddr, to: TunnelTo<'_>, timeout_ms: u64) -> Result<Upgraded, UpstreamError> {
        let work = self.open_untimed(tls, source, source_ip, &to);
        if timeout_ms == 0 {
            return work.await.inspect(|_| {
                self.stats.client_tunnels_total.fetch_add(1, Ordering::Relaxed);
            });
        }
        match tokio::time::timeout(Duration::from_millis(timeout_ms), work).await {
            Ok(r) => r.inspect(|_| {
                self.stats.client_tunnels_total.fetch_add(1, Ordering::Relaxed);
            }),
            Err(_) => Err(failure("connect-timeout", format!("HBONE tunnel to {} via {}: no answer within {timeout_ms} ms", to.target, to.via))),
        }
    }

    async fn open_untimed(&self, tls: &MeshTls, source: &str, source_ip: IpAddr, to: &TunnelTo<'_>) -> Result<Upgraded, UpstreamError> {
        let key = SessionKey { source: source.to_string(), generation: tls.generation, via: to.via, expect: to.expect.to_string() };
        let pooled = {
            let mut sessions = self.sessions.lock().unwrap();
            match sessions.get(&key) {
                Some(s) if !s.is_closed() => Some(s.clone()),
                Some(_) => {
                    sessions.remove(&key);
                    None
                }
                None => None,
            }
        };
        if let Some(session) = pooled {
            match connect(session, source_ip, to).await {
                Ok(t) => return Ok(t),
                // The session went away (GOAWAY, reset) under us: once more on a fresh one.
                Err(Refused::Session(_)) => {
                    self.sessions.lock().unwrap().remove(&key);
                }
                Err(Refused::Answer(e)) => return Err(e),
            }
        }
        let session = self.handshake(tls, source, to).await?;
        self.sessions.lock().unwrap().insert(key, session.clone());
        connect(session, source_ip, to).await.map_err(|r| match r {
            Refused::Session(e) | Refused::Answer(e) => e,
        })
    }

    async fn handshake(&self, tls: &MeshTls, source: &str, to: &TunnelTo<'_>) -> Result<http2::SendRequest<Empty<Bytes>>, UpstreamError> {
        let where_ = format!("HBONE tunnel to {} via {}", to.target, to.via);
        let creds = tls
            .credentials(source)
            .ok_or_else(|| failure("connect-failure", format!("{where_}: this node holds no certificate for {source}")))?;
        let config = creds.client(to.expect).map_err(|e| failure("connect-failure", format!("{where_}: {e}")))?;
        let tcp = TcpStream::connect(to.via).await.map_err(|e| failure("connect-failure", format!("{where_}: connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream = TlsConnector::from(config)
            .connect(ServerName::IpAddress(to.via.ip().into()), tcp)
            .await
            .map_err(|e| failure("connect-failure", format!("{where_}: TLS: {e}")))?;
        if stream.get_ref().1.alpn_protocol() != Some(super::tls::ALPN_H2) {
            return Err(failure("connect-failure", format!("{where_}: the server did not agree to ALPN h2")));
        }
        let (session, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
                .max_frame_size(256 * 1024)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failure("connect-failure", format!("{where_}: HTTP/2: {e}")))?;
        self.stats.sessions_total.fetch_add(1, Ordering::Relaxed);
        let open = Open::new(&self.stats, |s| &s.sessions);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(open);
        });
        Ok(session)
    }
}

enum Refused {
    /// The session could not carry the stream: worth a fresh session.
    Session(UpstreamError),
    /// The server answered: final.
    Answer(UpstreamError),
}

async fn connect(mut session: http2::SendRequest<Empty<Bytes>>, source_ip: IpAddr, to: &TunnelTo<'_>) -> Result<Upgraded, Refused> {
    let where_ = format!("HBONE tunnel to {} via {}", to.target, to.via);
    session.ready().await.map_err(|e| Refused::Session(failure("connect-failure", format!("{where_}: {e}"))))?;
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri(to.target.to_string())
        .header("forwarded", forwarded_for(source_ip))
        .header("traceparent", traceparent())
        .body(Empty::<Bytes>::new())
        .map_err(|e| Refused::Answer(failure("connect-failure", format!("{where_}: {e}"))))?;
    let res = session.send_request(req).await.map_err(|e| Refused::Session(failure("connect-failure", format!("{where_}: {e}"))))?;
    if res.status() != StatusCode::OK {
        let reason = res.headers().get(REASON_HEADER).and_then(|v| v.to_str().ok()).map(|r| format!(" ({r})")).unwrap_or_default();
        return Err(Refused::Answer(failure("connect-failure", format!("{where_}: refused with {}{reason}", res.status()))));
    }
    hyper::upgrade::on(res).await.map_err(|e| Refused::Answer(failure("connect-failure", format!("{where_}: {e}"))))
}

/// A W3C trace context for the tunnel (a new trace, sampled off).
fn traceparent() -> String {
    let (a, b, c) = (super::super::balancer::random(), super::super::balancer::random(), super::super::balancer::random());
    format!("00-{a:016x}{b:016x}-{c:016x}-00")
}
