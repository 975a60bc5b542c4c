//! L4: bytes spliced between the client and an endpoint, never parsed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};

use super::balancer::{Endpoint, record_result};
use super::records::HostPort;
use super::state::Route;
use super::upstream::{BoxedIo, Pools, UpstreamError, Via};

pub struct Spliced {
    pub upstream: Option<HostPort>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub error: Option<String>,
}

/// An endpoint picked and connected, counted as active until dropped.
pub struct Connected {
    ep: Arc<Endpoint>,
    upstream: HostPort,
    io: BoxedIo,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.ep.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Picks an endpoint and connects to it (the route's connect timeout), directly or through
/// the tunnel `via` names for it.
pub async fn connect_endpoint(route: &Arc<Route>, via: impl Fn(SocketAddr) -> Result<Via, UpstreamError>, pools: &Pools) -> Result<Connected, Spliced> {
    let Some(ep) = route.balancer.pick(route.policy, &route.endpoints, None) else {
        return Err(Spliced { upstream: None, bytes_received: 0, bytes_sent: 0, error: Some(format!("no endpoints for {}", route.service.as_deref().unwrap_or(&route.name))) });
    };
    let upstream = HostPort { address: ep.addr.ip().to_string(), port: ep.addr.port() };
    ep.active.fetch_add(1, Ordering::Relaxed);
    let dialed = match via(ep.addr) {
        Ok(via) => pools.connect(ep.addr, &via, route.connect_timeout_ms).await,
        Err(e) => Err(e),
    };
    match dialed {
        Err(e) => {
            record_result(&ep, true, &route.endpoints, &route.outlier);
            ep.active.fetch_sub(1, Ordering::Relaxed);
            Err(Spliced { upstream: Some(upstream), bytes_received: 0, bytes_sent: 0, error: Some(format!("{}: {}", e.kind, e.message)) })
        }
        Ok(io) => {
            record_result(&ep, false, &route.endpoints, &route.outlier);
            Ok(Connected { ep, upstream, io })
        }
    }
}

/// Bytes moved per read in each direction: large enough that a tunnel's TLS records and
/// HTTP/2 DATA frames are full-sized on a bulk transfer (tokio's default is 8 KiB).
const COPY_BUFFER_BYTES: usize = 64 << 10;

/// Copies both ways until both sides are done; half-closes are passed on.
pub async fn copy_both_ways<S: AsyncRead + AsyncWrite + Unpin>(mut client: S, mut up: Connected) -> Spliced {
    let upstream = Some(up.upstream.clone());
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut up.io, COPY_BUFFER_BYTES, COPY_BUFFER_BYTES).await {
        Ok((rx, tx)) => Spliced { upstream, bytes_received: rx, bytes_sent: tx, error: None },
        Err(e) => Spliced { upstream, bytes_received: 0, bytes_sent: 0, error: Some(format!("reset: {e}")) },
    }
}
