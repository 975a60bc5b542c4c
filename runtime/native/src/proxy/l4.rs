//! L4: bytes spliced between the client and an endpoint, never parsed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpStream;

use super::balancer::record_result;
use super::records::HostPort;
use super::state::Route;
use super::upstream::connect_tcp;

pub struct Spliced {
    pub upstream: Option<HostPort>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub error: Option<String>,
}

/// Picks an endpoint, connects (the route's connect timeout) and copies both ways until both
/// sides are done; half-closes are passed on.
pub async fn splice(mut client: TcpStream, route: &Arc<Route>) -> Spliced {
    let Some(ep) = route.balancer.pick(route.policy, &route.endpoints, None) else {
        return Spliced { upstream: None, bytes_received: 0, bytes_sent: 0, error: Some(format!("no endpoints for {}", route.service.as_deref().unwrap_or(&route.name))) };
    };
    let upstream = Some(HostPort { address: ep.addr.ip().to_string(), port: ep.addr.port() });
    ep.active.fetch_add(1, Ordering::Relaxed);
    let out = match connect_tcp(ep.addr, route.connect_timeout_ms).await {
        Err(e) => {
            record_result(&ep, true, &route.endpoints, &route.outlier);
            Spliced { upstream, bytes_received: 0, bytes_sent: 0, error: Some(format!("{}: {}", e.kind, e.message)) }
        }
        Ok(mut up) => {
            record_result(&ep, false, &route.endpoints, &route.outlier);
            match tokio::io::copy_bidirectional(&mut client, &mut up).await {
                Ok((rx, tx)) => Spliced { upstream, bytes_received: rx, bytes_sent: tx, error: None },
                Err(e) => Spliced { upstream, bytes_received: 0, bytes_sent: 0, error: Some(format!("reset: {e}")) },
            }
        }
    };
    ep.active.fetch_sub(1, Ordering::Relaxed);
    out
}
