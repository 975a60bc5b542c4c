//! HBONE: mutual TLS 1.3 between nodes, HTTP/2 `CONNECT` streams as tunnels, spoken as
//! Istio ambient's ztunnel speaks it, so Ambit nodes and ztunnels exchange traffic.
//!
//! - `tls.rs`: the node's workload certificates and trust bundle, the rustls configurations.
//! - `server.rs`: the inbound side (default :15008): the certificate of the workload whose
//!   address was dialed, `CONNECT` checked and admitted into the inbound path.
//! - `client.rs`: the outbound side: pooled sessions per source identity and destination.
//! - `stats.rs`: what both sides counted, for the `ambit_hbone_*` metrics.

mod client;
mod server;
mod stats;
mod tls;

use std::net::IpAddr;

pub use client::{TunnelTo, Tunnels};
pub use server::serve;
pub use stats::{Counted, Stats};
pub use tls::{MeshTls, MeshTlsSpec};

/// Per-stream flow-control window (SETTINGS_INITIAL_WINDOW_SIZE), both sides: large enough
/// that a tunnel is never held back by it on a fast path.
pub const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// Connection-level flow-control window.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;
/// Tunnels one session may carry at once (SETTINGS_MAX_CONCURRENT_STREAMS the server sends).
pub const MAX_TUNNELS_PER_SESSION: u32 = 1000;
/// The response header carrying the reason of a refused tunnel.
pub const REASON_HEADER: &str = "ambit-reason";

/// `for=10.0.0.1` / `for="[fd00::1]"` (RFC 7239).
pub fn forwarded_for(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    }
}

/// The first `for=` address of a `forwarded` header, when it is an IP address.
pub fn parse_forwarded_for(value: &str) -> Option<IpAddr> {
    let first = value.split(',').next()?;
    first.split(';').map(str::trim).find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        let v = v.strip_prefix('[').map(|r| r.split(']').next().unwrap_or(r)).unwrap_or(v);
        v.parse::<IpAddr>().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_round_trips() {
        for ip in ["10.0.0.1", "fd00::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(parse_forwarded_for(&forwarded_for(ip)), Some(ip));
        }
        assert_eq!(parse_forwarded_for("proto=https; for=192.0.2.60;by=203.0.113.43"), Some("192.0.2.60".parse().unwrap()));
        assert_eq!(parse_forwarded_for("for=_hidden"), None);
        assert_eq!(parse_forwarded_for("for=unknown, for=10.0.0.2"), None);
        assert_eq!(parse_forwarded_for("by=10.0.0.1"), None);
    }
}
