//! What the HBONE sides counted, read by Node's metrics (`ambit_hbone_*`) and `/config_dump`
//! in the shape the Node data path's HBONE reports: `{ server: {…}, client: {…} }`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Default)]
pub struct Stats {
    /// Inbound: open connections, accepted ones, refused ones (TLS, certificate, address).
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Inbound: open tunnels, CONNECTs received, CONNECTs refused.
    pub tunnels: AtomicI64,
    pub tunnels_total: AtomicU64,
    pub tunnels_refused: AtomicU64,
    /// Inbound: tunnel bytes from and to the peers.
    pub bytes_from_peers: AtomicU64,
    pub bytes_to_peers: AtomicU64,
    /// Outbound: open sessions, sessions made, open tunnels, tunnels opened.
    pub sessions: AtomicI64,
    pub sessions_total: AtomicU64,
    pub client_tunnels: AtomicI64,
    pub client_tunnels_total: AtomicU64,
}

impl Stats {
    pub fn json(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = |a: &AtomicI64| a.load(Ordering::Relaxed).max(0);
        json!({
            "server": {
                "connections": g(&self.connections),
                "connectionsTotal": n(&self.connections_total),
                "connectionsRefused": n(&self.connections_refused),
                "tunnels": g(&self.tunnels),
                "tunnelsTotal": n(&self.tunnels_total),
                "tunnelsRefused": n(&self.tunnels_refused),
                "bytesFromPeers": n(&self.bytes_from_peers),
                "bytesToPeers": n(&self.bytes_to_peers),
            },
            "client": {
                "sessions": g(&self.sessions),
                "sessionsTotal": n(&self.sessions_total),
                "tunnels": g(&self.client_tunnels),
                "tunnelsTotal": n(&self.client_tunnels_total),
            },
        })
    }
}

/// Holds one count of a gauge up while it lives.
pub struct Open(Arc<Stats>, fn(&Stats) -> &AtomicI64);

impl Open {
    pub fn new(stats: &Arc<Stats>, gauge: fn(&Stats) -> &AtomicI64) -> Open {
        gauge(stats).fetch_add(1, Ordering::Relaxed);
        Open(stats.clone(), gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}

/// A tunnel's stream, counted open while it lives; with `bytes`, what it reads and writes is
/// added to the inbound byte totals.
pub struct Counted<S> {
    inner: S,
    stats: Arc<Stats>,
    bytes: bool,
    _open: Open,
}

impl<S> Counted<S> {
    pub fn inbound(inner: S, stats: &Arc<Stats>) -> Self {
        Counted { inner, stats: stats.clone(), bytes: true, _open: Open::new(stats, |s| &s.tunnels) }
    }

    pub fn outbound(inner: S, stats: &Arc<Stats>) -> Self {
        Counted { inner, stats: stats.clone(), bytes: false, _open: Open::new(stats, |s| &s.client_tunnels) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.bytes {
            self.stats.bytes_from_peers.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (true, Poll::Ready(Ok(n))) = (self.bytes, &r) {
            self.stats.bytes_to_peers.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
