//! The L7 pipeline, for HTTP/1.1 and HTTP/2 clients alike. A request flows:
//!
//!   head checks + normalisation → route (Host routing outbound only) → request phase
//!   → endpoint choice → upstream attempt (the port's protocol) → response phase
//!   (may retry: bodies up to retryBufferBytes are buffered for it) → client
//!
//! Upstream failures before a response become a local 503 (504 on a per-try timeout) with
//! `x-ambit-upstream-error: <kind>`, which the response phase sees like any response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::balancer::{Endpoint, random, record_result};
use super::normalize::{normalize_target, valid_authority};
use super::phase::{Context, Direction, HeaderList, LocalResponse, Outcome, Peer, PhaseReport, RequestHead, ResponseHead, failure_response};
use super::records::{HostPort, LocalReply, Records, RequestRecord};
use super::resets::Resets;
use super::state::{Protocol, Route, State};
use super::hbone::MeshTls;
use super::upstream::{Body, BoxError, Pools, UpstreamError, Via, Wire, send_upgrade};

/// What every request of one downstream connection shares.
pub struct Conn {
    pub direction: Direction,
    pub source: Peer,
    /// The TLS session the connection arrived in (HBONE); None: plaintext.
    pub tls: Option<crate::wire::TlsInfo>,
    pub dest: SocketAddr,
    /// The snapshot the connection was admitted on, and its route there (None: not meshed).
    pub state: Arc<State>,
    pub route: Option<Arc<Route>>,
    /// The listener target's host the route was found by, when the connection had no original destination.
    pub by_host: Option<String>,
    /// Where the current snapshot is: each request starts on it (see `Conn::snapshot`).
    pub shared: Arc<super::Shared>,
    pub records: Arc<Records>,
    /// The node's mesh TLS material when the connection started (tunnels to other nodes).
    pub mesh: Option<Arc<MeshTls>>,
    pub pools: Arc<Pools>,
    /// Requests cancelled by the client before their response (see `resets.rs`).
    pub resets: Resets,
}

impl Conn {
    /// The snapshot a request starting now runs on, and the connection's route in it: the current
    /// one, so that a reload applies to the next request of a keep-alive connection (requests in
    /// flight keep theirs).
    fn snapshot(&self) -> (Arc<State>, Option<Arc<Route>>) {
        match self.shared.state() {
            Some(now) if !Arc::ptr_eq(&now, &self.state) => {
                let route = match &self.by_host {
                    Some(host) => now.route_by_host(host, self.dest.port()),
                    None => now.route(self.direction, self.dest.ip(), self.dest.port()),
                };
                (now, route)
            }
            _ => (self.state.clone(), self.route.clone()),
        }
    }
}

/// Connection-specific headers: never forwarded, never shown to filters.
fn hop_by_hop(name: &str) -> bool {
    matches!(name, "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "http2-settings" | "expect" | "te" | "host")
}

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

fn incoming(b: Incoming) -> Body {
    b.map_err(|e| Box::new(e) as BoxError).boxed()
}

pub fn request_id() -> String {
    let (a, b) = (random(), random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// Where the request's record and counters end: when its response body is done (or dropped).
struct Track {
    records: Arc<Records>,
    record: RequestRecord,
    started: Instant,
    route: Arc<Route>,
    retrying: bool,
    endpoint: Option<Arc<Endpoint>>,
    received: Option<Arc<AtomicU64>>,
}

impl Drop for Track {
    fn drop(&mut self) {
        self.route.load[0].fetch_sub(1, Ordering::Relaxed);
        if self.retrying {
            self.route.load[1].fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(ep) = self.endpoint.take() {
            ep.active.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(r) = &self.received {
            self.record.bytes_received = r.load(Ordering::Relaxed);
        }
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.records.request(&mut self.record);
    }
}

/// A response body that counts what it sends and finishes the request's record when it ends.
struct Tracked {
    inner: Body,
    track: Option<Box<Track>>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = this.track.as_mut() {
                    if let Some(d) = frame.data_ref() {
                        t.record.bytes_sent += d.len() as u64;
                    } else if let Some(tr) = frame.trailers_ref() {
                        if let Some(s) = tr.get("grpc-status").and_then(|v| v.to_str().ok()) {
                            t.record.grpc_status = Some(s.to_string());
                        }
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(t) = this.track.as_mut() {
                    t.record.upstream_error = Some(format!("reset: {e}"));
                }
                this.track = None;
            }
            Poll::Ready(None) => this.track = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts request body bytes as they stream upstream.
struct Counting {
    inner: Body,
    count: Arc<AtomicU64>,
}

impl HttpBody for Counting {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &polled {
            if let Some(d) = f.data_ref() {
                self.count.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn header_list(headers: &HeaderMap, keep_upgrade: bool) -> Result<HeaderList, &'static str> {
    // Names listed in `connection` are connection-specific too.
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let mut out = Vec::with_capacity(headers.len() + 1);
    for (name, value) in headers {
        let n = name.as_str();
        let keep = match n {
            "te" => value.as_bytes().eq_ignore_ascii_case(b"trailers"),
            "upgrade" => keep_upgrade,
            _ => !hop_by_hop(n) && !listed.iter().any(|l| l == n),
        };
        if !keep {
            continue;
        }
        let v = std::str::from_utf8(value.as_bytes()).map_err(|_| "a header value is not valid UTF-8")?;
        out.push((n.to_string(), v.to_string()));
    }
    Ok(out)
}

fn is_upgrade(req: &Request<Incoming>) -> Option<String> {
    let up = req.headers().get(header::UPGRADE)?.to_str().ok()?.trim().to_string();
    let conn_says = req.headers().get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    // Upgrade to cleartext HTTP/2 is declined (as Envoy does): served as HTTP/1.1 through the filters.
    (conn_says && !up.eq_ignore_ascii_case("h2c")).then_some(up)
}

/// The head filters see, from what arrived: one authority, a normalised origin-form path.
fn request_head(conn: &Conn, req: &Request<Incoming>) -> Result<RequestHead, &'static str> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Err("more than one Host header");
    }
    let host = req.headers().get(header::HOST).map(|h| h.to_str().map_err(|_| "the Host header is not valid")).transpose()?;
    let uri = req.uri();
    let connect = req.method() == Method::CONNECT;
    let authority = match (req.version(), uri.authority()) {
        (Version::HTTP_2, Some(a)) => {
            if host.is_some_and(|h| !h.eq_ignore_ascii_case(a.as_str())) {
                return Err("the Host header differs from :authority");
            }
            a.as_str().to_string()
        }
        // Absolute-form (or CONNECT's authority-form): the target's authority wins over Host (RFC 9112 §3.2.2).
        (_, Some(a)) => a.as_str().to_string(),
        (_, None) => match host {
            Some(h) => h.to_string(),
            None if req.version() == Version::HTTP_11 || req.version() == Version::HTTP_2 => return Err("the request has no Host header"),
            None => conn.dest.to_string(),
        },
    };
    if !valid_authority(&authority) {
        return Err("the request's authority is not a valid host[:port]");
    }
    let path = if connect {
        authority.clone()
    } else {
        let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        normalize_target(target).map_err(|e| e.0)?
    };
    let headers = header_list(req.headers(), false)?;
    Ok(RequestHead { method: req.method().as_str().to_string(), scheme: "http".into(), authority, path, headers })
}

fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(':')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !hop_by_hop(name)
        && HeaderValue::from_str(value).is_ok()
        && name.len() + value.len() <= 64 * 1024
}

/// A filter's request head is checked before it touches the wire: a failure otherwise. On an
/// upgrade request (`upgrade`), the `upgrade` header the filters were shown is the one
/// hop-by-hop header they may return.
fn check_request_head(h: &RequestHead, upgrade: bool) -> Result<(), String> {
    if Method::from_bytes(h.method.as_bytes()).is_err() {
        return Err(format!("method {:?} is not a token", h.method));
    }
    if !valid_authority(&h.authority) {
        return Err(format!(":authority {:?} is not a valid host[:port]", h.authority));
    }
    if h.method != "CONNECT" && (!(h.path.starts_with('/') || h.path == "*") || h.path.parse::<http::uri::PathAndQuery>().is_err()) {
        return Err(format!(":path {:?} is not an origin-form target", h.path));
    }
    if let Some((n, _)) = h.headers.iter().find(|(n, v)| !(valid_header(n, v) || upgrade && n == "upgrade" && HeaderValue::from_str(v).is_ok())) {
        return Err(format!("header {n:?} is not a valid, forwardable header (RFC 9110)"));
    }
    Ok(())
}

fn check_response_head(h: &ResponseHead, content_length: Option<&str>) -> Result<(), String> {
    if !(100..=599).contains(&h.status) {
        return Err(format!("status {} is outside 100-599", h.status));
    }
    if let Some((n, _)) = h.headers.iter().find(|(n, v)| !valid_header(n, v)) {
        return Err(format!("header {n:?} is not a valid, forwardable header (RFC 9110)"));
    }
    let after = h.headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.as_str());
    if after != content_length {
        return Err("content-length was changed".into());
    }
    Ok(())
}

fn header_map(list: &HeaderList) -> HeaderMap {
    let mut m = HeaderMap::with_capacity(list.len());
    for (n, v) in list {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v)) {
            m.append(n, v);
        }
    }
    m
}

fn local_response(r: &LocalResponse) -> Response<Body> {
    let mut res = Response::new(if r.body.is_empty() { empty() } else { full(Bytes::from(r.body.clone())) });
    *res.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *res.headers_mut() = header_map(&r.headers);
    res.headers_mut().remove(header::CONTENT_LENGTH);
    res
}

fn text(status: u16, extra: &[(&str, &str)], body: String) -> LocalResponse {
    let mut headers: HeaderList = vec![("content-type".into(), "text/plain".into())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    LocalResponse { status, headers, body }
}

/// Envoy's wording, so people find it.
fn upstream_failure(e: &UpstreamError) -> LocalResponse {
    let status = if e.kind == "timeout" { 504 } else { 503 };
    let what = match e.kind {
        "timeout" => "upstream request timeout",
        "no-healthy-upstream" => "no healthy upstream",
        _ => "upstream connect error or disconnect/reset before headers",
    };
    text(status, &[("x-ambit-upstream-error", e.kind)], format!("{what}. reset reason: {}: {}\n", e.kind, e.message))
}

fn peer_of_route(dest: SocketAddr, route: &Route) -> Peer {
    let w = route.workload.as_ref();
    Peer {
        identity: w.map(|w| w.identity.clone()),
        workload: w.map(|w| w.name.clone()),
        namespace: w.map(|w| w.namespace.clone()),
        address: dest.ip().to_string(),
        port: dest.port(),
    }
}

/// Serves one request; never fails (errors become responses).
pub async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // Dropped before the response exists: the client cancelled the request in flight.
    let pending = conn.resets.started();
    let (state, route) = conn.snapshot();
    let timeout = state.limits.request_timeout_ms;
    let res = if timeout == 0 {
        serve(conn.clone(), state, route, req).await
    } else {
        match tokio::time::timeout(Duration::from_millis(timeout), serve(conn.clone(), state, route, req)).await {
            Ok(r) => r,
            Err(_) => local_response(&text(408, &[], "request timeout\n".into())),
        }
    };
    pending.answered();
    Ok(res)
}

fn protocol_name(version: Version, headers: &HeaderList) -> &'static str {
    let grpc = headers.iter().any(|(n, v)| n == "content-type" && v.starts_with("application/grpc"));
    if grpc {
        "grpc"
    } else if version == Version::HTTP_2 {
        "h2"
    } else {
        "http/1.1"
    }
}

async fn serve(conn: Arc<Conn>, state: Arc<State>, route_of_conn: Option<Arc<Route>>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let limits = state.limits.clone();
    let version = req.version();
    let route_of_conn = route_of_conn.unwrap_or_else(|| state.passthrough(conn.dest));

    let mut head = match request_head(&conn, &req) {
        Ok(h) => h,
        Err(why) => {
            let mut rec = RequestRecord {
                direction: conn.direction,
                protocol: if version == Version::HTTP_2 { "h2" } else { "http/1.1" },
                method: req.method().as_str().to_string(),
                authority: "-".into(),
                path: "-".into(),
                status: 400,
                grpc_status: None,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                request_id: request_id(),
                source: conn.source.clone(),
                destination: peer_of_route(conn.dest, &route_of_conn),
                service: None,
                upstream: None,
                attempts: 0,
                bytes_received: 0,
                bytes_sent: 0,
                local_reply: Some(LocalReply { filter: "ambit".into(), reason: format!("AMBIT_ERR_BAD_REQUEST: {why}") }),
                upstream_error: None,
                user_agent: None,
            };
            conn.records.request(&mut rec);
            let mut res = local_response(&text(400, &[("connection", "close")], format!("malformed request: {why}\n")));
            res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return res;
        }
    };
    let upgrade = if version == Version::HTTP_11 || version == Version::HTTP_10 { is_upgrade(&req) } else { None };
    if let Some(u) = &upgrade {
        head.headers.push(("upgrade".into(), u.clone()));
    }
    let request_id = match head.headers.iter().find(|(n, _)| n == "x-request-id") {
        Some((_, v)) => v.clone(),
        None => {
            let id = request_id();
            head.headers.push(("x-request-id".into(), id.clone()));
            id
        }
    };
    // Host routing is for outbound traffic only: inbound, the destination is the workload.
    let route = match conn.direction {
        Direction::Outbound => state.route_by_host(&head.authority, conn.dest.port()).unwrap_or(route_of_conn),
        Direction::Inbound => route_of_conn,
    };
    let mut ctx = Context {
        direction: conn.direction,
        source: conn.source.clone(),
        destination: peer_of_route(conn.dest, &route),
        service: route.service.clone(),
        route: Some(route.name.clone()),
        request_id: request_id.clone(),
        attempt: 1,
        tls: conn.tls.clone(),
    };
    route.load[0].fetch_add(1, Ordering::Relaxed);
    let mut track = Box::new(Track {
        records: conn.records.clone(),
        record: RequestRecord {
            direction: conn.direction,
            protocol: protocol_name(version, &head.headers),
            method: head.method.clone(),
            authority: head.authority.clone(),
            path: head.path.clone(),
            status: 0,
            grpc_status: None,
            duration_ms: 0.0,
            request_id,
            source: conn.source.clone(),
            destination: ctx.destination.clone(),
            service: route.service.clone(),
            upstream: None,
            attempts: 0,
            bytes_received: 0,
            bytes_sent: 0,
            local_reply: None,
            upstream_error: None,
            user_agent: head.headers.iter().find(|(n, _)| n == "user-agent").map(|(_, v)| v.clone()),
        },
        started,
        route: route.clone(),
        retrying: false,
        endpoint: None,
        received: None,
    });
    let reply = |mut track: Box<Track>, r: LocalResponse, filter: String, reason: String| -> Response<Body> {
        track.record.status = r.status;
        track.record.bytes_sent = r.body.len() as u64;
        track.record.local_reply = Some(LocalReply { filter, reason });
        local_response(&r)
    };

    // Request phase, inline on this thread.
    let chain = if route.l7 { route.chain.clone() } else { None };
    let mut directives = Default::default();
    if let Some(chain) = &chain {
        let mut report = PhaseReport::default();
        let out = chain.on_request(&ctx, &mut head, &route.load, &mut report);
        conn.records.phase("requestHeaders", &report);
        match out {
            Outcome::Continue(d) => directives = d,
            Outcome::Respond { response, filter, reason } => return reply(track, response, filter, reason),
            Outcome::Deny { reason, filter } | Outcome::Retry { reason, filter, .. } => return reply(track, text(403, &[], format!("{reason}\n")), filter, reason),
        }
        if let Err(why) = check_request_head(&head, upgrade.is_some()) {
            let msg = format!("AMBIT_ERR_FILTER_OUTPUT: the request head the filters returned is invalid: {why}");
            return reply(track, failure_response("chain", "trap"), "chain".into(), msg);
        }
        track.record.method = head.method.clone();
        track.record.path = head.path.clone();
        track.record.authority = head.authority.clone();
    }

    // A subset a filter chose (traffic split): its endpoints instead of the whole service's.
    let endpoints: Vec<Arc<Endpoint>> = match &directives.subset {
        None => route.endpoints.clone(),
        Some(s) => match route.subsets.get(s) {
            Some(eps) => eps.clone(),
            None => {
                let mut defined: Vec<&str> = route.subsets.keys().map(String::as_str).collect();
                defined.sort();
                let reason = format!(
                    "subset \"{s}\" is not defined for {} (defined: {}); add it to the service's subsets in the mesh config",
                    route.service.as_deref().unwrap_or(&route.name),
                    if defined.is_empty() { "none".to_string() } else { defined.join(", ") }
                );
                return reply(track, text(503, &[("x-ambit-upstream-error", "no-subset")], format!("no healthy upstream: {reason}\n")), "ambit".into(), reason);
            }
        },
    };
    let per_try_ms = match directives.per_try_timeout_ms {
        Some(t) if t > 0 => {
            if route.request_timeout_ms > 0 { route.request_timeout_ms.min(t as u64) } else { t as u64 }
        }
        _ => route.request_timeout_ms,
    };
    if let Some(d) = directives.delay_ms.filter(|d| *d > 0) {
        tokio::time::sleep(Duration::from_millis(d as u64)).await;
    }

    if upgrade.is_some() || head.method == "CONNECT" {
        if version == Version::HTTP_2 {
            return reply(track, text(501, &[], "CONNECT over HTTP/2 is not supported here\n".into()), "ambit".into(), "CONNECT over HTTP/2".into());
        }
        return upgrade_request(conn, &state, route, endpoints, head, req, track).await;
    }

    // The body: buffered (so that it can be sent again) when small and complete, else streamed.
    let grpc = track.record.protocol == "grpc";
    let body = req.into_body();
    let mut buffered: Option<Bytes> = None;
    let mut streamed: Option<Body> = None;
    if body.is_end_stream() {
        buffered = Some(Bytes::new());
    } else if let Some(len) = body.size_hint().exact().filter(|l| *l as usize <= limits.retry_buffer_bytes && !grpc) {
        let read = tokio::time::timeout(Duration::from_millis(limits.idle_timeout_ms.max(1)), body.collect()).await;
        match read {
            Ok(Ok(c)) => {
                let b = c.to_bytes();
                track.record.bytes_received = b.len() as u64;
                let _ = len;
                buffered = Some(b);
            }
            Ok(Err(_)) => {
                track.record.status = 0;
                track.record.local_reply = Some(LocalReply { filter: "ambit".into(), reason: "the client went away while sending the body".into() });
                return local_response(&text(400, &[], "incomplete request body\n".into()));
            }
            Err(_) => return reply(track, text(408, &[("connection", "close")], "request body timeout\n".into()), "ambit".into(), "request body timeout".into()),
        }
    } else {
        let count = Arc::new(AtomicU64::new(0));
        track.received = Some(count.clone());
        streamed = Some(BodyExt::boxed(Counting { inner: incoming(body), count }));
    }

    let wire = match route.protocol {
        Protocol::Http => Wire::Http1,
        Protocol::Http2 => Wire::Http2,
        Protocol::Auto | Protocol::Tcp => {
            if version == Version::HTTP_2 { Wire::Http2 } else { Wire::Http1 }
        }
    };
    let mut attempt = 1u32;
    let mut exclude: Option<Arc<Endpoint>> = None;
    loop {
        track.record.attempts = attempt;
        let ep = route.balancer.pick(route.policy, &endpoints, exclude.as_ref());
        let result: Result<Response<Incoming>, UpstreamError> = match &ep {
            None => Err(UpstreamError { kind: "no-healthy-upstream", message: format!("no endpoints for {}", route.service.as_deref().unwrap_or(&route.name)) }),
            Some(ep) => {
                ep.active.fetch_add(1, Ordering::Relaxed);
                let body = match (&buffered, streamed.take()) {
                    (Some(b), _) => full(b.clone()),
                    (None, Some(s)) => s,
                    (None, None) => empty(),
                };
                let up = upstream_request(&head, wire, body);
                let send = async {
                    let via = Via::for_destination(&state, conn.mesh.as_ref(), &conn.source, ep.addr)?;
                    conn.pools.send(ep.addr, &via, wire, up, route.connect_timeout_ms).await
                };
                let r = if per_try_ms > 0 {
                    match tokio::time::timeout(Duration::from_millis(per_try_ms), send).await {
                        Ok(r) => r,
                        Err(_) => Err(UpstreamError { kind: "timeout", message: format!("no response headers within {per_try_ms} ms") }),
                    }
                } else {
                    send.await
                };
                let failed = match &r {
                    Ok(res) => res.status().as_u16() >= 500,
                    Err(_) => true,
                };
                record_result(ep, failed, &endpoints, &route.outlier);
                r
            }
        };
        track.record.upstream = ep.as_ref().map(|e| HostPort { address: e.addr.ip().to_string(), port: e.addr.port() });
        let (mut rhead, upstream_body, error) = match result {
            Ok(res) => {
                let (parts, body) = res.into_parts();
                let headers = header_list(&parts.headers, false).unwrap_or_default();
                let cl = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::to_string);
                let mut hs = headers;
                if let Some(cl) = cl {
                    if !hs.iter().any(|(n, _)| n == "content-length") {
                        hs.push(("content-length".into(), cl));
                    }
                }
                (ResponseHead { status: parts.status.as_u16(), headers: hs }, Some(body), None)
            }
            Err(e) => {
                let local = upstream_failure(&e);
                (ResponseHead { status: local.status, headers: local.headers.clone() }, None, Some((e, local.body)))
            }
        };
        track.record.upstream_error = error.as_ref().map(|(e, _)| e.kind.to_string());
        // The endpoint stays busy until its response is read (or dropped).
        if let Some(old) = std::mem::replace(&mut track.endpoint, ep.clone()) {
            old.active.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(chain) = &chain {
            ctx.attempt = attempt;
            let content_length = rhead.headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.clone());
            let mut report = PhaseReport::default();
            let out = chain.on_response(&ctx, &head, &mut rhead, error.as_ref().map(|(e, _)| e.kind), &route.load, &mut report);
            conn.records.phase("responseHeaders", &report);
            match out {
                Outcome::Retry { delay_ms, reason, filter } => {
                    // The engine counted this request as retrying when its first retry was decided.
                    track.retrying = true;
                    let retriable = buffered.is_some();
                    if retriable && attempt < limits.max_attempts {
                        drop(upstream_body);
                        if delay_ms > 0 {
                            tokio::time::sleep(Duration::from_millis(delay_ms.min(60_000) as u64)).await;
                        }
                        if error.is_some() {
                            exclude = ep.clone();
                        }
                        attempt += 1;
                        continue;
                    }
                    let _ = (reason, filter);
                }
                Outcome::Respond { response, filter, reason } => return reply(track, response, filter, reason),
                Outcome::Deny { reason, filter } => return reply(track, text(403, &[], format!("{reason}\n")), filter, reason),
                Outcome::Continue(_) => {
                    if let Err(why) = check_response_head(&rhead, content_length.as_deref()) {
                        let msg = format!("AMBIT_ERR_FILTER_OUTPUT: the response head the filters returned is invalid: {why}");
                        return reply(track, failure_response("chain", "trap"), "chain".into(), msg);
                    }
                }
            }
        }
        track.record.status = rhead.status;
        let Some(body) = upstream_body else {
            let (e, text_body) = error.expect("no response means an error");
            let r = LocalResponse { status: rhead.status, headers: rhead.headers, body: text_body };
            return reply(track, r, "ambit".into(), format!("{}: {}", e.kind, e.message));
        };
        let mut res = Response::new(BodyExt::boxed(Tracked { inner: incoming(body), track: Some(track) }));
        *res.status_mut() = StatusCode::from_u16(rhead.status).unwrap_or(StatusCode::BAD_GATEWAY);
        *res.headers_mut() = header_map(&rhead.headers);
        return res;
    }
}

/// The request as the upstream gets it: exactly the head the filters saw, on the port's protocol.
fn upstream_request(head: &RequestHead, wire: Wire, body: Body) -> Request<Body> {
    let mut req = Request::new(body);
    *req.method_mut() = Method::from_bytes(head.method.as_bytes()).unwrap_or(Method::GET);
    let mut headers = header_map(&head.headers);
    headers.remove(header::CONTENT_LENGTH);
    match wire {
        Wire::Http1 => {
            *req.version_mut() = Version::HTTP_11;
            *req.uri_mut() = head.path.parse().unwrap_or_else(|_| Uri::from_static("/"));
            if let Ok(h) = HeaderValue::from_str(&head.authority) {
                headers.insert(header::HOST, h);
            }
        }
        Wire::Http2 => {
            *req.version_mut() = Version::HTTP_2;
            *req.uri_mut() = format!("{}://{}{}", head.scheme, head.authority, head.path).parse().unwrap_or_else(|_| Uri::from_static("/"));
        }
    }
    *req.headers_mut() = headers;
    req
}

async fn upgrade_request(conn: Arc<Conn>, state: &State, route: Arc<Route>, endpoints: Vec<Arc<Endpoint>>, head: RequestHead, mut req: Request<Incoming>, mut track: Box<Track>) -> Response<Body> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let Some(ep) = route.balancer.pick(route.policy, &endpoints, None) else {
        let e = UpstreamError { kind: "no-healthy-upstream", message: format!("no endpoints for {}", route.service.as_deref().unwrap_or(&route.name)) };
        track.record.status = 503;
        track.record.upstream_error = Some(e.kind.into());
        return local_response(&upstream_failure(&e));
    };
    track.record.attempts = 1;
    track.record.upstream = Some(HostPort { address: ep.addr.ip().to_string(), port: ep.addr.port() });
    ep.active.fetch_add(1, Ordering::Relaxed);
    track.endpoint = Some(ep.clone());
    let mut up = Request::new(empty());
    *up.method_mut() = Method::from_bytes(head.method.as_bytes()).unwrap_or(Method::GET);
    *up.uri_mut() = head.path.parse().unwrap_or_else(|_| Uri::from_static("/"));
    let mut headers = header_map(&head.headers);
    headers.remove(header::CONTENT_LENGTH);
    if let Ok(h) = HeaderValue::from_str(&head.authority) {
        headers.insert(header::HOST, h);
    }
    if head.method != "CONNECT" {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    *up.headers_mut() = headers;
    let connect = head.method == "CONNECT";
    let sent = match Via::for_destination(state, conn.mesh.as_ref(), &conn.source, ep.addr) {
        Ok(via) => send_upgrade(&conn.pools, ep.addr, &via, up, route.connect_timeout_ms).await,
        Err(e) => Err(e),
    };
    match sent {
        Err(e) => {
            record_result(&ep, true, &endpoints, &route.outlier);
            track.record.status = if e.kind == "timeout" { 504 } else { 503 };
            track.record.upstream_error = Some(e.kind.into());
            local_response(&upstream_failure(&e))
        }
        Ok(mut res) => {
            let status = res.status();
            let tunnel = status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success());
            record_result(&ep, status.as_u16() >= 500, &endpoints, &route.outlier);
            track.record.status = status.as_u16();
            if !tunnel {
                // Refused: an ordinary response; the client's connection stays HTTP.
                let (parts, body) = res.into_parts();
                let mut out = Response::new(BodyExt::boxed(Tracked { inner: incoming(body), track: Some(track) }));
                *out.status_mut() = parts.status;
                *out.headers_mut() = header_map(&header_list(&parts.headers, false).unwrap_or_default());
                if let Some(cl) = parts.headers.get(header::CONTENT_LENGTH) {
                    out.headers_mut().insert(header::CONTENT_LENGTH, cl.clone());
                }
                return out;
            }
            let upstream_upgrade = hyper::upgrade::on(&mut res);
            let mut out = Response::new(empty());
            *out.status_mut() = status;
            let mut headers = header_map(&header_list(res.headers(), !connect).unwrap_or_default());
            if !connect {
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            *out.headers_mut() = headers;
            let records = conn.records.clone();
            let _ = records;
            tokio::spawn(async move {
                let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) else {
                    track.record.upstream_error = Some("upgrade failed".into());
                    return;
                };
                let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                match tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    Ok((from_client, from_upstream)) => {
                        track.record.bytes_received = from_client;
                        track.record.bytes_sent = from_upstream;
                    }
                    Err(e) => track.record.upstream_error = Some(format!("reset: {e}")),
                }
            });
            out
        }
    }
}
