//! One accepted connection: original destination → source workload → route → connection
//! phase → L7 (HTTP/1.1 or HTTP/2, hyper) or L4 (splice).
//!
//! On a destination with HTTP filters (or a port declared `http`/`http2`) nothing is
//! spliced, with one documented exception on `protocol: auto` ports: a connection whose
//! first byte cannot begin an HTTP request (neither a token character nor CR/LF, e.g. a TLS
//! ClientHello) is not HTTP and is spliced. `protocol: http` or `http2` forbids even that:
//! such bytes get the HTTP parser's 400.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use super::Shared;
use super::http::{Conn, handle};
use super::l4::{connect_endpoint, copy_both_ways};
use crate::wire::TlsInfo;

use super::phase::{Context, Direction, Outcome, Peer, PhaseReport};
use super::records::{ConnectionRecord, LocalReply};
use super::resets::Resets;
use super::sniff::{Prefixed, Speaks, first_line};
use super::state::{Protocol, Route, State, canonical};
use super::upstream::{Pools, Via};

pub struct Listener {
    pub name: String,
    pub direction: Direction,
    /// Takes HBONE (mutual TLS, HTTP/2 CONNECT) instead of plaintext.
    pub hbone: bool,
    pub local: SocketAddr,
    /// Where connections go when the socket carries no original destination.
    pub target: Option<SocketAddr>,
    /// A service name target (`name.namespace`, port), routed by name when there is no address.
    pub target_name: Option<(String, u16)>,
    pub open: AtomicUsize,
    pub max_connections: usize,
}

const SO_ORIGINAL_DST: libc::c_int = 80;

// The HTTP/2 server's limits (the README's "HTTP/2 server limits"). The header list is capped
// at `limits.maxHeaderBytes` (431 past it), which also bounds a CONTINUATION flood together
// with h2's cap on CONTINUATION frames per header block; h2 acknowledges one SETTINGS at a
// time and stops reading while the ACK cannot be written, which bounds a SETTINGS flood.
/// Streams a client may have open at once; more are refused (RST_STREAM REFUSED_STREAM).
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Streams a client may reset before they are accepted (rapid reset) before GOAWAY ENHANCE_YOUR_CALM.
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the proxy may reset for the client's errors before it closes the connection.
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// A PING after this long without frames from the client ...
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// ... and the connection closed when it is not answered within this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// What capture (eBPF `cgroup/getsockopt`, or a netfilter redirect) says the client connected
/// to; None when the socket was not redirected.
pub(super) fn original_dst(s: &TcpStream) -> Option<SocketAddr> {
    let local = s.local_addr().ok()?;
    let fd = s.as_raw_fd();
    let v4 = matches!(canonical(local.ip()), IpAddr::V4(_));
    let found = if v4 {
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: a valid socket fd and a buffer of the size passed.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_IP, SO_ORIGINAL_DST, &mut a as *mut _ as *mut libc::c_void, &mut len) };
        (r == 0).then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))), u16::from_be(a.sin_port)))
    } else {
        let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: as above.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_IPV6, SO_ORIGINAL_DST, &mut a as *mut _ as *mut libc::c_void, &mut len) };
        (r == 0).then(|| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)), u16::from_be(a.sin6_port)))
    }?;
    let same = canonical(found.ip()) == canonical(local.ip()) && found.port() == local.port();
    (!same).then_some(found)
}

/// A first byte an HTTP/1 request line (or the HTTP/2 preface) can start with: a token character or CR/LF.
fn may_be_http(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~\r\n".contains(&b)
}

pub(super) struct OpenGuard<'a>(&'a AtomicUsize, &'a AtomicUsize);
impl OpenGuard<'_> {
    pub(super) fn new<'a>(listener: &'a AtomicUsize, all: &'a AtomicUsize) -> (OpenGuard<'a>, usize) {
        let open = listener.fetch_add(1, Ordering::Relaxed) + 1;
        all.fetch_add(1, Ordering::Relaxed);
        (OpenGuard(listener, all), open)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn serve(stream: TcpStream, client: SocketAddr, listener: Arc<Listener>, shared: Arc<Shared>, pools: Arc<Pools>) {
    let started = Instant::now();
    let (_guard, open) = OpenGuard::new(&listener.open, &shared.open);
    let Some(state) = shared.state() else { return };
    let _ = stream.set_nodelay(true);
    let source_ip = canonical(client.ip());
    let source_workload = state.workload_by_address(source_ip).cloned();
    let source = Peer {
        // Outbound traffic comes from a local workload: the proxy acts with its identity. Plaintext inbound carries none.
        identity: if listener.direction == Direction::Outbound { source_workload.as_ref().map(|w| w.identity.clone()) } else { None },
        workload: source_workload.as_ref().map(|w| w.name.clone()),
        namespace: source_workload.as_ref().map(|w| w.namespace.clone()),
        address: source_ip.to_string(),
        port: client.port(),
    };
    let unrouted = |error: String| ConnectionRecord {
        direction: listener.direction,
        mode: "l4",
        source: source.clone(),
        destination: Peer { address: listener.local.ip().to_string(), port: listener.local.port(), ..Default::default() },
        service: None,
        upstream: None,
        bytes_received: 0,
        bytes_sent: 0,
        duration_ms: 0.0,
        denied: None,
        error: Some(error),
    };
    if open > listener.max_connections {
        shared.records.connection(&unrouted(format!("AMBIT_ERR_CONNECTION_LIMIT: listener {} has {} connections open (maxConnections); closing", listener.name, listener.max_connections)));
        return;
    }
    let mut by_name = None;
    let mut dest = original_dst(&stream).or(listener.target);
    if dest.is_none() {
        if let Some((name, port)) = &listener.target_name {
            let host = format!("{name}:{port}");
            by_name = state.route_by_host(&host, *port).map(|r| (host, r));
            if by_name.is_some() {
                dest = Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port));
            }
        }
    }
    let Some(dest) = dest else {
        shared.records.connection(&unrouted(format!("listener {}: the connection has no original destination and the listener has no target; closing", listener.name)));
        return;
    };
    let dest = SocketAddr::new(canonical(dest.ip()), dest.port());
    if by_name.is_none() && shared.is_own_listener(dest) {
        shared.records.connection(&unrouted(format!("listener {}: the destination {dest} is the proxy itself; closing to avoid a loop", listener.name)));
        return;
    }
    serve_routed(stream, listener.direction, source, dest, by_name, state, shared.clone(), pools, started).await;
}

/// A connection past its route and connection phase: what it is and where it goes.
pub(super) struct Admitted {
    pub direction: Direction,
    pub source: Peer,
    /// The TLS session the connection arrived in (HBONE); None: plaintext.
    pub tls: Option<TlsInfo>,
    pub dest: SocketAddr,
    /// The route of the destination; None: not meshed (the passthrough route serves it).
    pub route: Option<Arc<Route>>,
    /// The listener target's host the route was found by (no original destination).
    pub by_host: Option<String>,
    pub effective: Arc<Route>,
    pub record: ConnectionRecord,
    /// HTTP is parsed (filters with request phases, or a port declared HTTP).
    pub l7: bool,
    pub state: Arc<State>,
    pub shared: Arc<Shared>,
    pub started: Instant,
}

impl Admitted {
    pub fn finish(mut self) {
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.shared.records.connection(&self.record);
    }

    /// How the L4 upstream is reached (directly, or through HBONE to another node).
    pub fn via(&self, ep: SocketAddr) -> Result<Via, super::upstream::UpstreamError> {
        Via::for_destination(&self.state, self.shared.mesh().as_ref(), &self.source, ep)
    }
}

/// Routes a connection and runs its connection phase. A denial is recorded (the connection
/// is done) and its reason returned.
#[allow(clippy::too_many_arguments)]
pub(super) fn admit(direction: Direction, source: Peer, tls: Option<TlsInfo>, dest: SocketAddr, by_name: Option<Arc<Route>>, state: Arc<State>, shared: Arc<Shared>, started: Instant) -> Result<Admitted, String> {
    let route = by_name.or_else(|| state.route(direction, dest.ip(), dest.port()));
    let effective = route.clone().unwrap_or_else(|| state.passthrough(dest));
    let w = effective.workload.as_ref();
    let destination = Peer {
        identity: w.map(|w| w.identity.clone()),
        workload: w.map(|w| w.name.clone()),
        namespace: w.map(|w| w.namespace.clone()),
        address: dest.ip().to_string(),
        port: dest.port(),
    };
    let l7 = effective.l7 && effective.protocol != Protocol::Tcp;
    let record = ConnectionRecord {
        direction,
        mode: if l7 { "l7" } else { "l4" },
        source: source.clone(),
        destination: destination.clone(),
        service: effective.service.clone(),
        upstream: None,
        bytes_received: 0,
        bytes_sent: 0,
        duration_ms: 0.0,
        denied: None,
        error: None,
    };
    let mut admitted = Admitted { direction, source, tls, dest, route, by_host: None, effective, record, l7, state, shared, started };

    // Connection phase, inline.
    if let (Some(chain), true) = (&admitted.effective.chain, admitted.effective.connection_phase) {
        let ctx = Context {
            direction,
            source: admitted.source.clone(),
            destination,
            service: admitted.effective.service.clone(),
            route: Some(admitted.effective.name.clone()),
            request_id: super::http::request_id(),
            attempt: 1,
            tls: admitted.tls.clone(),
        };
        let mut report = PhaseReport::default();
        let out = chain.on_connection(&ctx, &mut report);
        admitted.shared.records.phase("connection", &report);
        if let Outcome::Deny { reason, filter } | Outcome::Respond { reason, filter, .. } = out {
            let why = format!("denied by {filter}: {reason}");
            admitted.record.denied = Some(LocalReply { filter, reason });
            admitted.finish();
            return Err(why);
        }
    }
    Ok(admitted)
}

#[allow(clippy::too_many_arguments)]
async fn serve_routed(stream: TcpStream, direction: Direction, source: Peer, dest: SocketAddr, by_name: Option<(String, Arc<Route>)>, state: Arc<State>, shared: Arc<Shared>, pools: Arc<Pools>, started: Instant) {
    let (by_host, by_name) = by_name.unzip();
    let Ok(mut a) = admit(direction, source, None, dest, by_name, state, shared, started) else { return };
    a.by_host = by_host;
    carry(stream, a, pools).await;
}

/// An admitted connection's bytes, from the client's first: L4 unless HTTP is parsed; on an
/// `auto` port with HTTP filters, the first byte decides (`may_be_http`) and is replayed.
pub(super) async fn carry<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(mut stream: S, mut a: Admitted, pools: Arc<Pools>) {
    if !a.l7 {
        return splice_admitted(stream, a, &pools).await;
    }
    let mut first = Vec::new();
    if a.effective.protocol == Protocol::Auto {
        let mut byte = [0u8; 1];
        let limit = Duration::from_millis(a.state.limits.sniff_timeout_ms.max(1));
        match tokio::time::timeout(limit, stream.read(&mut byte)).await {
            Err(_) => {
                a.record.error = Some(silent_client(&a));
                return a.finish();
            }
            Ok(Ok(0)) | Ok(Err(_)) => return a.finish(),
            Ok(Ok(_)) => first.push(byte[0]),
        }
        if !may_be_http(byte[0]) {
            return splice_admitted(Prefixed::new(first, stream), a, &pools).await;
        }
    }
    serve_http(stream, first, a, pools).await;
}

/// The error of a client that sent nothing on an HTTP-filtered `auto` port.
fn silent_client(a: &Admitted) -> String {
    format!(
        "no bytes within {} ms; HTTP filters are bound to {}, so the connection is closed (declare the port protocol: tcp for server-first protocols)",
        a.state.limits.sniff_timeout_ms,
        a.effective.service.as_deref().unwrap_or(&a.effective.name)
    )
}

/// L4: an endpoint is picked, connected and spliced with the client.
async fn splice_admitted<S: AsyncRead + AsyncWrite + Unpin>(client: S, mut a: Admitted, pools: &Pools) {
    a.record.mode = "l4";
    let r = match connect_endpoint(&a.effective, |ep| a.via(ep), pools).await {
        Err(r) => r,
        Ok(up) => copy_both_ways(client, up).await,
    };
    a.record.upstream = r.upstream;
    a.record.bytes_received = r.bytes_received;
    a.record.bytes_sent = r.bytes_sent;
    a.record.error = r.error;
    a.finish()
}

/// L7: HTTP/1.1 or HTTP/2 (hyper) on `stream`, whose first bytes `prefix` were already read.
async fn serve_http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(mut stream: S, mut prefix: Vec<u8>, mut a: Admitted, pools: Arc<Pools>) {
    let limits = a.state.limits.clone();
    // A port declared http2: HTTP/1.x only for a well-formed request line (sniff.rs).
    let speaks = if a.effective.protocol == Protocol::Http2 {
        let (speaks, more) = first_line(&mut stream, prefix, limits.max_header_bytes.max(8192), Duration::from_millis(limits.headers_timeout_ms.max(1))).await;
        prefix = more;
        speaks
    } else {
        Speaks::Http1
    };
    let conn = Arc::new(Conn {
        direction: a.direction,
        source: a.source.clone(),
        tls: a.tls.clone(),
        dest: a.dest,
        state: a.state.clone(),
        route: a.route.clone(),
        by_host: a.by_host.clone(),
        shared: a.shared.clone(),
        records: a.shared.records.clone(),
        mesh: a.shared.mesh(),
        pools,
        resets: Resets::default(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.headers_timeout_ms.max(1)))
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(Some(H2_MAX_PENDING_ACCEPT_RESETS))
        .max_local_error_reset_streams(Some(H2_MAX_LOCAL_ERROR_RESETS))
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let watched = conn.clone();
    let service = service_fn(move |req| handle(conn.clone(), req));
    let io = TokioIo::new(Prefixed::new(prefix, stream));
    // HTTP/2 only: no HTTP/1 upgrades to serve (`http2_only` is ignored with upgrades).
    let served = if speaks == Speaks::Http2 {
        until_flooded(builder.http2_only().serve_connection(io, service), &watched.resets).await
    } else {
        until_flooded(builder.serve_connection_with_upgrades(io, service), &watched.resets).await
    };
    if let Err(msg) = served {
        if msg.starts_with("AMBIT_ERR_") || (!msg.contains("connection closed") && !msg.contains("reset")) {
            a.record.error = Some(msg);
        }
    }
    a.finish();
}

/// Serves a connection until it ends, or until its client has cancelled too many requests in
/// flight (`resets.rs`): then it is dropped, which closes the socket.
async fn until_flooded<E: std::fmt::Display>(conn: impl std::future::Future<Output = Result<(), E>>, resets: &Resets) -> Result<(), String> {
    tokio::select! {
        r = conn => r.map_err(|e| e.to_string()),
        why = resets.flooded() => Err(why),
    }
}
