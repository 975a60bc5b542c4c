//! The data path: listeners, L4 and L7, upstreams, filters called inline. Read in the order
//! traffic flows:
//!
//! - `listener.rs`: one tokio runtime per thread, each accepting on its own SO_REUSEPORT socket;
//! - `inbound.rs`: original destination → route → connection phase → L7 or L4;
//! - `l4.rs`: splice; `http.rs`: the HTTP pipeline; `normalize.rs`: what a request looks like to filters;
//! - `balancer.rs`: endpoint choice and outlier ejection; `upstream.rs`: pools and upgrades;
//! - `phase.rs`: the seam to the filter engine; `state.rs`: the snapshot Node hands over;
//! - `records.rs`: access records and phase facts, taken by Node in batches;
//! - `hbone/`: mTLS tunnels between nodes (rustls, HTTP/2 CONNECT), both sides.
//!
//! Node keeps the control side: config, reloads (`setState`), identity, capture, admin, and
//! the access log and metrics built from the records.

mod balancer;
mod hbone;
mod http;
mod inbound;
mod l4;
mod listener;
mod normalize;
mod phase;
mod records;
mod resets;
mod sniff;
mod state;
mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use serde_json::json;

use crate::NativeEngine;
use phase::{ChainRunner, PhaseRunner};
use records::Records;
use state::{Registry, State, StateSpec};

/// What every data-path thread shares.
pub struct Shared {
    state: RwLock<Option<Arc<State>>>,
    records: Arc<Records>,
    /// Every listener's bound address, to refuse connections whose destination is the proxy itself.
    own: RwLock<Vec<SocketAddr>>,
    /// Connections open on every listener.
    open: AtomicUsize,
    /// The node's workload certificates and trust bundle (`setIdentities`); None: no mTLS.
    mesh: RwLock<Option<Arc<hbone::MeshTls>>>,
    /// Generations of `mesh` handed over so far.
    mesh_generation: AtomicU64,
    /// What HBONE counted, both sides.
    hbone: Arc<hbone::Stats>,
}

impl Shared {
    fn state(&self) -> Option<Arc<State>> {
        self.state.read().unwrap().clone()
    }

    fn mesh(&self) -> Option<Arc<hbone::MeshTls>> {
        self.mesh.read().unwrap().clone()
    }

    fn is_own_listener(&self, dest: SocketAddr) -> bool {
        self.own.read().unwrap().iter().any(|a| a.port() == dest.port() && (a.ip() == dest.ip() || a.ip().is_unspecified()))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyOptions {
    /// Data-path threads (tokio runtimes). Default: the number of CPU cores.
    threads: Option<usize>,
    /// Connections one listener holds open at most. Default 65536.
    max_connections: Option<usize>,
    /// Histogram bounds of the metrics the data path counts.
    #[serde(default)]
    buckets: records::Buckets,
    /// Whether request records are kept for an access log.
    #[serde(default)]
    access_log: bool,
}

/// The native data path of one node proxy process.
#[napi]
pub struct NativeProxy {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    threads: usize,
    max_connections: usize,
    running: Mutex<Option<listener::Running>>,
}

#[napi]
impl NativeProxy {
    /// `options`: JSON `{ threads?, maxConnections?, buckets: { request, filter }, accessLog }`.
    #[napi(constructor)]
    pub fn new(options: String) -> Result<Self> {
        let o: ProxyOptions = serde_json::from_str(&options).map_err(|e| Error::from_reason(format!("AMBIT_ERR_CONFIG_INVALID: bad data path options: {e}")))?;
        let threads = o.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).clamp(1, 256);
        Ok(NativeProxy {
            shared: Arc::new(Shared { state: RwLock::new(None), records: Arc::new(Records::new(o.buckets, o.access_log)), own: RwLock::new(Vec::new()), open: AtomicUsize::new(0), mesh: RwLock::new(None), mesh_generation: AtomicU64::new(0), hbone: Arc::default() }),
            registry: Arc::new(Registry::default()),
            threads,
            max_connections: o.max_connections.unwrap_or(65_536).max(1),
            running: Mutex::new(None),
        })
    }

    /// Swaps in a new snapshot (JSON of a `NativeStateSpec`), its chains looked up in `engine`.
    /// Connections already open keep the snapshot they started on.
    #[napi]
    pub fn set_state(&self, spec: String, engine: &NativeEngine) -> Result<()> {
        let spec: StateSpec = serde_json::from_str(&spec).map_err(|e| Error::from_reason(format!("AMBIT_ERR_CONFIG_INVALID: bad data path state: {e}")))?;
        let lookup = |id: u32| -> Option<Arc<dyn PhaseRunner>> { engine.chain_for_proxy(id).map(|chain| Arc::new(ChainRunner { chain }) as Arc<dyn PhaseRunner>) };
        let state = State::build(spec, self.registry.clone(), &lookup).map_err(|e| Error::from_reason(format!("AMBIT_ERR_CONFIG_INVALID: {e}")))?;
        *self.shared.state.write().unwrap() = Some(Arc::new(state));
        Ok(())
    }

    /// Swaps in the node's mesh TLS material: JSON `{ roots, identities: [{ identity, chain, key }] }`
    /// (PEM). HBONE handshakes from now on use it; connections already open keep theirs.
    /// Errors name the identity at fault, never key material.
    #[napi]
    pub fn set_identities(&self, spec: String) -> Result<u32> {
        let spec: hbone::MeshTlsSpec = serde_json::from_str(&spec).map_err(|e| Error::from_reason(format!("AMBIT_ERR_IDENTITY: bad mesh TLS material (at line {}, column {})", e.line(), e.column())))?;
        let generation = self.shared.mesh_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let tls = hbone::MeshTls::build(spec, generation).map_err(|e| Error::from_reason(format!("AMBIT_ERR_IDENTITY: {e}")))?;
        let count = tls.identities().count() as u32;
        *self.shared.mesh.write().unwrap() = Some(Arc::new(tls));
        Ok(count)
    }

    /// Starts the listeners (JSON `[{ name, direction, address, port, target? }]`) on every
    /// data-path thread; answers where each is bound, as JSON `{ name: { address, port } }`.
    #[napi]
    pub fn listen(&self, listeners: String) -> Result<String> {
        let specs: Vec<listener::ListenerSpec> = serde_json::from_str(&listeners).map_err(|e| Error::from_reason(format!("AMBIT_ERR_CONFIG_INVALID: bad listeners: {e}")))?;
        let mut running = self.running.lock().unwrap();
        if running.is_some() {
            return Err(Error::from_reason("AMBIT_ERR_LISTEN: the data path is already listening"));
        }
        let r = listener::start(&specs, self.threads, self.max_connections, self.shared.clone()).map_err(Error::from_reason)?;
        let addresses: serde_json::Map<String, serde_json::Value> = r.bound.iter().map(|(n, a)| (n.clone(), json!({ "address": a.ip().to_string(), "port": a.port() }))).collect();
        *self.shared.own.write().unwrap() = r.bound.iter().map(|(_, a)| *a).collect();
        *running = Some(r);
        Ok(serde_json::Value::Object(addresses).to_string())
    }

    /// What the data path counted and recorded since the last take, as JSON:
    /// `{ dropped, records, requests, filters, counters }` (`records.rs`).
    #[napi]
    pub fn take_records(&self) -> String {
        self.shared.records.take()
    }

    /// What HBONE counted, as JSON `{ server: {…}, client: {…} }` (`hbone/stats.rs`).
    #[napi]
    pub fn hbone_stats(&self) -> String {
        self.shared.hbone.json().to_string()
    }

    /// Facts for `/config_dump`.
    #[napi]
    pub fn info(&self) -> String {
        let version = self.shared.state().map(|s| s.version);
        json!({ "threads": self.threads, "maxConnections": self.max_connections, "openConnections": self.shared.open.load(Ordering::Relaxed), "stateVersion": version }).to_string()
    }

    /// Stops accepting now; open connections get `drainMs` to finish, then are closed.
    /// `closed()` turns true once every thread is done.
    #[napi]
    pub fn close(&self, drain_ms: u32) {
        if let Some(r) = self.running.lock().unwrap().as_ref() {
            r.stop(drain_ms as u64);
        }
    }

    #[napi]
    pub fn closed(&self) -> bool {
        self.running.lock().unwrap().as_ref().is_none_or(|r| r.finished())
    }
}
