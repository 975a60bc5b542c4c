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
use tokio::net::TcpStream;

use super::Shared;
use super::http::{Conn, handle};
use super::l4::splice;
use super::phase::{Context, Direction, Outcome, Peer, PhaseReport};
use super::records::{ConnectionRecord, LocalReply};
use super::resets::Resets;
use super::sniff::{Prefixed, Speaks, first_line};
use super::state::{Protocol, State, canonical};
use super::upstream::Pools;

pub struct Listener {
    pub name: String,
    pub direction: Direction,
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
fn original_dst(s: &TcpStream) -> Option<SocketAddr> {
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

struct OpenGuard<'a>(&'a AtomicUsize, &'a AtomicUsize);
impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn serve(stream: TcpStream, client: SocketAddr, listener: Arc<Listener>, shared: Arc<Shared>, pools: Arc<Pools>) {
    let started = Instant::now();
    let open = listener.open.fetch_add(1, Ordering::Relaxed) + 1;
    shared.open.fetch_add(1, Ordering::Relaxed);
    let _guard = OpenGuard(&listener.open, &shared.open);
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
            by_name = state.route_by_host(&format!("{name}:{port}"), *port);
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

#[allow(clippy::too_many_arguments)]
async fn serve_routed(mut stream: TcpStream, direction: Direction, source: Peer, dest: SocketAddr, by_name: Option<Arc<super::state::Route>>, state: Arc<State>, shared: Arc<Shared>, pools: Arc<Pools>, started: Instant) {
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
    let mut record = ConnectionRecord {
        direction,
        mode: if effective.l7 && effective.protocol != Protocol::Tcp { "l7" } else { "l4" },
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
    let finish = |mut record: ConnectionRecord| {
        record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        shared.records.connection(&record);
    };

    // Connection phase, inline.
    if let (Some(chain), true) = (&effective.chain, effective.connection_phase) {
        let ctx = Context {
            direction,
            source: source.clone(),
            destination: destination.clone(),
            service: effective.service.clone(),
            route: Some(effective.name.clone()),
            request_id: super::http::request_id(),
            attempt: 1,
        };
        let mut report = PhaseReport::default();
        let out = chain.on_connection(&ctx, &mut report);
        shared.records.phase("connection", &report);
        if let Outcome::Deny { reason, filter } | Outcome::Respond { reason, filter, .. } = out {
            record.denied = Some(LocalReply { filter, reason });
            return finish(record);
        }
    }

    let l7 = effective.l7 && effective.protocol != Protocol::Tcp;
    let mut http = l7;
    if l7 && effective.protocol == Protocol::Auto {
        let mut first = [0u8; 1];
        let limit = Duration::from_millis(state.limits.sniff_timeout_ms.max(1));
        match tokio::time::timeout(limit, stream.peek(&mut first)).await {
            Err(_) => {
                record.error = Some(format!(
                    "no bytes within {} ms; HTTP filters are bound to {}, so the connection is closed (declare the port protocol: tcp for server-first protocols)",
                    state.limits.sniff_timeout_ms,
                    effective.service.as_deref().unwrap_or(&effective.name)
                ));
                return finish(record);
            }
            Ok(Ok(0)) | Ok(Err(_)) => return finish(record),
            Ok(Ok(_)) => http = may_be_http(first[0]),
        }
    }
    if !http {
        record.mode = "l4";
        let r = splice(stream, &effective).await;
        record.upstream = r.upstream;
        record.bytes_received = r.bytes_received;
        record.bytes_sent = r.bytes_sent;
        record.error = r.error;
        return finish(record);
    }

    let limits = &state.limits;
    // A port declared http2: HTTP/1.x only for a well-formed request line (sniff.rs).
    let (speaks, prefix) = if effective.protocol == Protocol::Http2 {
        first_line(&mut stream, limits.max_header_bytes.max(8192), Duration::from_millis(limits.headers_timeout_ms.max(1))).await
    } else {
        (Speaks::Http1, Vec::new())
    };
    let conn = Arc::new(Conn { direction, source, dest, state: state.clone(), route, records: shared.records.clone(), pools, resets: Resets::default() });
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
            record.error = Some(msg);
        }
    }
    finish(record);
}

/// Serves a connection until it ends, or until its client has cancelled too many requests in
/// flight (`resets.rs`): then it is dropped, which closes the socket.
async fn until_flooded<E: std::fmt::Display>(conn: impl std::future::Future<Output = Result<(), E>>, resets: &Resets) -> Result<(), String> {
    tokio::select! {
        r = conn => r.map_err(|e| e.to_string()),
        why = resets.flooded() => Err(why),
    }
}
