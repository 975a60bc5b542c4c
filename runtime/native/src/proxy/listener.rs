//! Listeners: one tokio current-thread runtime per data-path thread, each with its own
//! socket per listener bound with SO_REUSEPORT, so the kernel spreads accepts across the
//! threads and a connection lives on the thread that accepted it (filters included).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use super::Shared;
use super::inbound::{Listener, serve};
use super::phase::Direction;
use super::upstream::Pools;

#[derive(Deserialize)]
pub struct Target {
    address: String,
    port: u16,
}

#[derive(Deserialize)]
pub struct ListenerSpec {
    name: String,
    direction: Direction,
    address: String,
    port: u16,
    target: Option<Target>,
    /// The HBONE listener: mutual TLS, HTTP/2 CONNECT tunnels (`hbone/server.rs`).
    #[serde(default)]
    hbone: bool,
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "inbound" => Ok(Direction::Inbound),
            "outbound" => Ok(Direction::Outbound),
            other => Err(serde::de::Error::custom(format!("direction {other:?} is neither inbound nor outbound"))),
        }
    }
}

pub struct Running {
    pub bound: Vec<(String, SocketAddr)>,
    stop: watch::Sender<Option<u64>>,
    finished: Arc<AtomicUsize>,
    threads: usize,
}

impl Running {
    pub fn stop(&self, drain_ms: u64) {
        let _ = self.stop.send(Some(drain_ms));
    }

    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire) >= self.threads
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        let _ = s.set_only_v6(false);
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

pub fn start(specs: &[ListenerSpec], threads: usize, max_connections: usize, shared: Arc<Shared>) -> Result<Running, String> {
    // Per thread, one socket per listener; port 0 is resolved by the first bind.
    let mut sockets: Vec<Vec<std::net::TcpListener>> = (0..threads).map(|_| Vec::new()).collect();
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for spec in specs {
        let ip: IpAddr = spec.address.parse().map_err(|_| format!("AMBIT_ERR_LISTEN: listener {}: {} is not an IP address", spec.name, spec.address))?;
        let mut addr = SocketAddr::new(ip, spec.port);
        for (i, per_thread) in sockets.iter_mut().enumerate() {
            let l = bind(addr).map_err(|e| format!("AMBIT_ERR_LISTEN: listener {} on {addr}: {e}", spec.name))?;
            if i == 0 {
                addr = l.local_addr().map_err(|e| format!("AMBIT_ERR_LISTEN: {e}"))?;
            }
            per_thread.push(l);
        }
        // A target is an address, or a service name (`name.namespace`) routed by name.
        let (target, target_name) = match &spec.target {
            None => (None, None),
            Some(t) => match super::state::parse_ip(&t.address) {
                Some(ip) => (Some(SocketAddr::new(ip, t.port)), None),
                None => (None, Some((t.address.clone(), t.port))),
            },
        };
        listeners.push(Arc::new(Listener { name: spec.name.clone(), direction: spec.direction, hbone: spec.hbone, local: addr, target, target_name, open: AtomicUsize::new(0), max_connections }));
        bound.push((spec.name.clone(), addr));
    }
    let (stop, stopped) = watch::channel(None::<u64>);
    let finished = Arc::new(AtomicUsize::new(0));
    for (i, socks) in sockets.into_iter().enumerate() {
        let (listeners, shared, mut stopped, finished) = (listeners.clone(), shared.clone(), stopped.clone(), finished.clone());
        std::thread::Builder::new()
            .name(format!("ambit-data-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(_) => {
                        finished.fetch_add(1, Ordering::Release);
                        return;
                    }
                };
                rt.block_on(async move {
                    let pools = Arc::new(Pools::new(shared.hbone.clone()));
                    let mut accepting = Vec::new();
                    for (sock, l) in socks.into_iter().zip(listeners.iter().cloned()) {
                        let Ok(tl) = tokio::net::TcpListener::from_std(sock) else { continue };
                        let (shared, pools, mut stopped) = (shared.clone(), pools.clone(), stopped.clone());
                        accepting.push(tokio::spawn(async move {
                            loop {
                                tokio::select! {
                                    r = tl.accept() => match r {
                                        Ok((s, peer)) if l.hbone => { tokio::spawn(super::hbone::serve(s, peer, l.clone(), shared.clone(), pools.clone())); }
                                        Ok((s, peer)) => { tokio::spawn(serve(s, peer, l.clone(), shared.clone(), pools.clone())); }
                                        // Out of descriptors and the like: back off briefly, keep serving.
                                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                                    },
                                    _ = stopped.changed() => break,
                                }
                            }
                        }));
                    }
                    let _ = stopped.wait_for(|v| v.is_some()).await;
                    let drain = stopped.borrow().unwrap_or(0);
                    for a in accepting {
                        let _ = a.await;
                    }
                    let deadline = Instant::now() + Duration::from_millis(drain);
                    while shared.open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
                // Dropping the runtime closes what is still open.
                drop(rt);
                finished.fetch_add(1, Ordering::Release);
            })
            .map_err(|e| format!("AMBIT_ERR_LISTEN: starting a data-path thread: {e}"))?;
    }
    Ok(Running { bound, stop, finished, threads })
}
