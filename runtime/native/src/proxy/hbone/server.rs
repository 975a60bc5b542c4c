//! The HBONE server: a connection from another node (or a ztunnel), read in the order it
//! happens.
//!
//! 1. The dialed address: the original destination (capture redirects a workload's
//!    `:15008` here), else the socket's local address. It must be a workload on this node;
//!    the TLS server presents that workload's certificate.
//! 2. Mutual TLS 1.3: the client's chain must end in the trust bundle; its SPIFFE ID is the
//!    source identity.
//! 3. HTTP/2; each `CONNECT <ip>:<port>` stream is a tunnel:
//!    - 405 for another method; 400 when the authority's IP is not the dialed one;
//!    - the source address is the `forwarded: for=` address only when that workload's
//!      identity is the client certificate's; otherwise it is `unknown`;
//!    - the inbound route and connection phase decide (401 on a denial, with the reason);
//!    - L4: the workload is connected first (503 when it refuses), then 200 and the bytes
//!      spliced; L7: 200, then the stream is served as HTTP with the inbound filters.
//!    - 200 carries `baggage` naming the destination workload.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::super::Shared;
use super::super::inbound::{Listener, OpenGuard, admit, carry, original_dst};
use super::super::l4::{connect_endpoint, copy_both_ways};
use super::super::phase::{Direction, Peer};
use super::super::records::{ConnectionRecord, LocalReply};
use super::super::state::{State, canonical};
use super::super::upstream::Pools;
use super::stats::{Counted, Open};
use super::tls::spiffe_id;
use crate::wire::TlsInfo;
use super::{CONNECTION_WINDOW_BYTES, MAX_TUNNELS_PER_SESSION, REASON_HEADER, STREAM_WINDOW_BYTES, parse_forwarded_for};

/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted HBONE connection.
struct Session {
    client: SocketAddr,
    dialed: SocketAddr,
    peer_identity: String,
    tls: TlsInfo,
    state: Arc<State>,
    shared: Arc<Shared>,
    pools: Arc<Pools>,
}

fn refusal(shared: &Shared, client: SocketAddr, dialed: SocketAddr, reason: String) {
    shared.records.connection(&ConnectionRecord {
        direction: Direction::Inbound,
        mode: "l4",
        source: Peer { address: canonical(client.ip()).to_string(), port: client.port(), ..Default::default() },
        destination: Peer { address: dialed.ip().to_string(), port: dialed.port(), ..Default::default() },
        service: None,
        upstream: None,
        bytes_received: 0,
        bytes_sent: 0,
        duration_ms: 0.0,
        denied: Some(LocalReply { filter: "hbone".into(), reason }),
        error: None,
    });
}

pub async fn serve(tcp: TcpStream, client: SocketAddr, listener: Arc<Listener>, shared: Arc<Shared>, pools: Arc<Pools>) {
    let (_guard, open) = OpenGuard::new(&listener.open, &shared.open);
    let Some(state) = shared.state() else { return };
    let _ = tcp.set_nodelay(true);
    let Some(dialed) = original_dst(&tcp).or_else(|| tcp.local_addr().ok()) else { return };
    let dialed = SocketAddr::new(canonical(dialed.ip()), dialed.port());
    let stats = shared.hbone.clone();
    stats.connections_total.fetch_add(1, Ordering::Relaxed);
    let refuse = |reason: String| {
        stats.connections_refused.fetch_add(1, Ordering::Relaxed);
        refusal(&shared, client, dialed, reason)
    };
    if open > listener.max_connections {
        return refuse(format!("AMBIT_ERR_CONNECTION_LIMIT: listener {} has {} connections open (maxConnections)", listener.name, listener.max_connections));
    }
    let Some(mesh) = shared.mesh() else { return refuse("this node has no mesh certificates yet".into()) };
    let Some(workload) = state.workload_by_address(dialed.ip()).filter(|w| w.local) else {
        return refuse(format!("{} is not a workload on this node, so there is no certificate to answer with", dialed.ip()));
    };
    let Some(creds) = mesh.credentials(&workload.identity) else {
        return refuse(format!("no certificate for {} ({}/{}) yet", workload.identity, workload.namespace, workload.name));
    };
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(creds.server.clone()).accept(tcp)).await {
        Err(_) => return refuse(format!("the TLS handshake did not finish within {} s", HANDSHAKE_TIMEOUT.as_secs())),
        Ok(Err(e)) => return refuse(format!("TLS handshake: {e}")),
        Ok(Ok(tls)) => tls,
    };
    let _open = Open::new(&stats, |s| &s.connections);
    let peer_identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(spiffe_id) {
        Some(Ok(id)) => id,
        Some(Err(e)) => return refuse(format!("the client certificate: {e}")),
        None => return refuse("the client presented no certificate".into()),
    };
    let facts = {
        let c = tls.get_ref().1;
        TlsInfo {
            version: "TLSv1.3".into(),
            // The IANA name, as OpenSSL and Node report it.
            cipher: c.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).map(|n| n.replace("TLS13_", "TLS_")).unwrap_or_default(),
            sni: c.server_name().map(str::to_string),
        }
    };
    let session = Arc::new(Session { client, dialed, peer_identity, tls: facts, state, shared: shared.clone(), pools });
    let served = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(256 * 1024)
        .max_concurrent_streams(MAX_TUNNELS_PER_SESSION)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .serve_connection(TokioIo::new(tls), service_fn(move |req| tunnel(session.clone(), req)))
        .await;
    // A peer that breaks the HTTP/2 protocol is recorded; one that hangs up is not (each
    // tunnel has its own record).
    if let Err(e) = served {
        if e.is_parse() || e.is_user() {
            refusal(&shared, client, dialed, format!("HTTP/2: {e}"));
        }
    }
}

fn answer(status: StatusCode, reason: Option<&str>) -> Response<Empty<Bytes>> {
    let mut res = Response::new(Empty::new());
    *res.status_mut() = status;
    if let Some(r) = reason.and_then(|r| http::HeaderValue::from_str(r).ok()) {
        res.headers_mut().insert(REASON_HEADER, r);
    }
    res
}

async fn tunnel(s: Arc<Session>, mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let stats = &s.shared.hbone;
    stats.tunnels_total.fetch_add(1, Ordering::Relaxed);
    let refuse = |status: StatusCode, reason: String| {
        stats.tunnels_refused.fetch_add(1, Ordering::Relaxed);
        refusal(&s.shared, s.client, s.dialed, reason.clone());
        Ok(answer(status, Some(&reason)))
    };
    if req.method() != Method::CONNECT {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not CONNECT: an HBONE stream is a CONNECT tunnel", req.method()));
    }
    let Some(target) = req.uri().authority().and_then(|a| a.as_str().parse::<SocketAddr>().ok()) else {
        return refuse(StatusCode::BAD_REQUEST, format!("the CONNECT authority {:?} is not <ip>:<port>", req.uri().to_string()));
    };
    if canonical(target.ip()) != s.dialed.ip() {
        return refuse(StatusCode::BAD_REQUEST, format!("the CONNECT authority {target} is not the address dialed ({})", s.dialed.ip()));
    }
    let dest = SocketAddr::new(s.dialed.ip(), target.port());
    let claimed = req.headers().get("forwarded").and_then(|v| v.to_str().ok()).and_then(parse_forwarded_for).map(canonical);
    let source = match claimed.and_then(|ip| s.state.workload_by_address(ip).filter(|w| w.identity == s.peer_identity).map(|w| (ip, w))) {
        Some((ip, w)) => Peer { identity: Some(s.peer_identity.clone()), workload: Some(w.name.clone()), namespace: Some(w.namespace.clone()), address: ip.to_string(), port: 0 },
        // Not the presenting workload's address (or none given): not believed.
        None => Peer { identity: Some(s.peer_identity.clone()), address: "unknown".into(), ..Default::default() },
    };
    let admitted = match admit(Direction::Inbound, source, Some(s.tls.clone()), dest, None, s.state.clone(), s.shared.clone(), Instant::now()) {
        Ok(a) => a,
        Err(why) => {
            stats.tunnels_refused.fetch_add(1, Ordering::Relaxed);
            return Ok(answer(StatusCode::UNAUTHORIZED, Some(&why)));
        }
    };
    let baggage = admitted
        .effective
        .workload
        .as_ref()
        .map(|w| format!("k8s.namespace.name={},k8s.workload.name={}", w.namespace, w.name))
        .and_then(|b| http::HeaderValue::from_str(&b).ok());
    let upgrade = hyper::upgrade::on(&mut req);
    let pools = s.pools.clone();
    let stats = stats.clone();
    if !admitted.l7 {
        // L4: the workload answers before the tunnel does.
        let mut a = admitted;
        let up = match connect_endpoint(&a.effective, |ep| a.via(ep), &pools).await {
            Ok(up) => up,
            Err(r) => {
                let reason = r.error.clone().unwrap_or_default();
                a.record.upstream = r.upstream;
                a.record.error = r.error;
                a.finish();
                stats.tunnels_refused.fetch_add(1, Ordering::Relaxed);
                return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, Some(&reason)));
            }
        };
        tokio::spawn(async move {
            match upgrade.await {
                Ok(stream) => {
                    let r = copy_both_ways(Counted::inbound(TokioIo::new(stream), &stats), up).await;
                    a.record.upstream = r.upstream;
                    a.record.bytes_received = r.bytes_received;
                    a.record.bytes_sent = r.bytes_sent;
                    a.record.error = r.error;
                }
                Err(e) => a.record.error = Some(format!("the tunnel closed before it opened: {e}")),
            }
            a.finish();
        });
    } else {
        tokio::spawn(async move {
            let mut a = admitted;
            let stream = match upgrade.await {
                Ok(stream) => Counted::inbound(TokioIo::new(stream), &stats),
                Err(e) => {
                    a.record.error = Some(format!("the tunnel closed before it opened: {e}"));
                    return a.finish();
                }
            };
            carry(stream, a, pools).await;
        });
    }
    let mut ok = answer(StatusCode::OK, None);
    if let Some(b) = baggage {
        ok.headers_mut().insert("baggage", b);
    }
    Ok(ok)
}
