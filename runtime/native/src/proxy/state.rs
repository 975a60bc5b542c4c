//! The snapshot the data path reads: routes by destination, filter chains, limits. Node
//! builds it from the mesh config (`runtime/src/node/native-state.ts`) and hands it over at
//! start and at every reload; it is swapped in atomically, and a connection keeps the
//! snapshot it started on (an `Arc`) until it ends, so a reload never changes the chains
//! under a request in flight. Endpoints, balancers and load counters are kept by key across
//! snapshots, so outlier and load state survive reloads.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::balancer::{Balancer, Endpoint, NO_EJECTION, OutlierPolicy, Policy};
use super::phase::{Direction, LoadCounters, PhaseRunner};

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Auto,
    Http,
    Http2,
    Tcp,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_header_bytes: usize,
    pub headers_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub retry_buffer_bytes: usize,
    pub max_attempts: u32,
    pub sniff_timeout_ms: u64,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    pub name: String,
    pub namespace: String,
    pub address: String,
    pub identity: String,
    /// On another node whose traffic goes over mTLS: the HBONE port its node listens on
    /// (the tunnel dials `address:hbonePort`). None: on this node, or no mTLS.
    #[serde(default)]
    pub hbone_port: Option<u16>,
    /// Runs on this node: HBONE arriving for its address is answered with its certificate.
    #[serde(default)]
    pub local: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointSpec {
    address: String,
    port: u16,
    workload: Option<WorkloadRef>,
}

#[derive(Deserialize)]
struct WorkloadRef {
    name: String,
    namespace: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RouteSpec {
    name: String,
    service: Option<String>,
    workload: Option<WorkloadSpec>,
    endpoints: Vec<EndpointSpec>,
    load_balancer: Policy,
    balancer_key: String,
    outlier: Option<OutlierPolicy>,
    protocol: Protocol,
    connect_timeout_ms: u64,
    request_timeout_ms: u64,
    chain: Option<u32>,
    #[serde(default)]
    subsets: HashMap<String, Vec<EndpointSpec>>,
    load_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VipSpec {
    address: String,
    port: u16,
    inbound: usize,
    outbound: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadRoutesSpec {
    workload: WorkloadSpec,
    key: String,
    service: Option<String>,
    inbound_chain: Option<u32>,
    outbound_chain: Option<u32>,
    /// Ports that services selecting the workload declare, with their protocol.
    #[serde(default)]
    ports: HashMap<u16, Protocol>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameSpec {
    host: String,
    port: u16,
    route: usize,
}

/// The JSON Node sends (`NativeStateSpec` in runtime/src/node/native-state.ts).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateSpec {
    pub version: u32,
    pub limits: Limits,
    routes: Vec<RouteSpec>,
    vips: Vec<VipSpec>,
    workloads: Vec<WorkloadRoutesSpec>,
    /// Outbound only: service host names (`name.namespace[.svc…]`) by port.
    names: Vec<NameSpec>,
}

pub struct Route {
    pub name: String,
    pub service: Option<String>,
    pub workload: Option<WorkloadSpec>,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub policy: Policy,
    pub balancer: Arc<Balancer>,
    pub outlier: OutlierPolicy,
    pub protocol: Protocol,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub chain: Option<Arc<dyn PhaseRunner>>,
    /// HTTP is parsed: the chain has request or response phases, or the port is declared HTTP.
    pub l7: bool,
    pub connection_phase: bool,
    pub subsets: HashMap<String, Vec<Arc<Endpoint>>>,
    pub load: LoadCounters,
}

struct WorkloadRoutes {
    info: WorkloadSpec,
    key: String,
    service: Option<String>,
    /// How traffic to the workload's own address is parsed, by port (others: auto).
    ports: HashMap<u16, Protocol>,
    inbound: Option<Arc<dyn PhaseRunner>>,
    outbound: Option<Arc<dyn PhaseRunner>>,
}

/// Endpoints, balancers and load counters by key, shared by every snapshot of a proxy.
#[derive(Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    balancers: Mutex<HashMap<String, Arc<Balancer>>>,
    loads: Mutex<HashMap<String, LoadCounters>>,
}

impl Registry {
    pub fn endpoint(&self, addr: SocketAddr, workload: Option<(String, String)>) -> Arc<Endpoint> {
        self.endpoints.lock().unwrap().entry(addr).or_insert_with(|| Arc::new(Endpoint::new(addr, workload))).clone()
    }
    fn balancer(&self, key: &str) -> Arc<Balancer> {
        self.balancers.lock().unwrap().entry(key.to_string()).or_insert_with(|| Arc::new(Balancer::new())).clone()
    }
    fn load(&self, key: &str) -> LoadCounters {
        self.loads.lock().unwrap().entry(key.to_string()).or_insert_with(|| Arc::new([AtomicI32::new(0), AtomicI32::new(0)])).clone()
    }
}

pub struct State {
    pub version: u32,
    pub limits: Limits,
    routes: Vec<Arc<Route>>,
    vips: HashMap<(IpAddr, u16), (usize, usize)>,
    workloads: HashMap<IpAddr, WorkloadRoutes>,
    names: HashMap<(String, u16), usize>,
    registry: Arc<Registry>,
    /// Routes to workload ports, made on first use.
    workload_routes: Mutex<HashMap<(Direction, IpAddr, u16), Arc<Route>>>,
}

pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    Some(canonical(ip))
}

/// IPv4-mapped IPv6 as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn endpoint_list(registry: &Registry, specs: &[EndpointSpec]) -> Result<Vec<Arc<Endpoint>>, String> {
    specs
        .iter()
        .map(|e| {
            let ip = parse_ip(&e.address).ok_or_else(|| format!("endpoint address {} is not an IP address", e.address))?;
            Ok(registry.endpoint(SocketAddr::new(ip, e.port), e.workload.as_ref().map(|w| (w.name.clone(), w.namespace.clone()))))
        })
        .collect()
}

fn l7_of(chain: &Option<Arc<dyn PhaseRunner>>, protocol: Protocol) -> bool {
    chain.as_ref().is_some_and(|c| c.has_request_phases()) || matches!(protocol, Protocol::Http | Protocol::Http2)
}

impl State {
    /// Builds a snapshot; `chain` resolves a chain id of the filter engine.
    pub fn build(spec: StateSpec, registry: Arc<Registry>, chain: &dyn Fn(u32) -> Option<Arc<dyn PhaseRunner>>) -> Result<State, String> {
        let resolve = |id: Option<u32>| -> Result<Option<Arc<dyn PhaseRunner>>, String> {
            match id {
                None => Ok(None),
                Some(id) => chain(id).map(Some).ok_or_else(|| format!("filter chain {id} is not defined in the engine")),
            }
        };
        let mut routes = Vec::with_capacity(spec.routes.len());
        for r in &spec.routes {
            let chain = resolve(r.chain)?;
            let mut subsets = HashMap::new();
            for (name, eps) in &r.subsets {
                subsets.insert(name.clone(), endpoint_list(&registry, eps)?);
            }
            routes.push(Arc::new(Route {
                name: r.name.clone(),
                service: r.service.clone(),
                workload: r.workload.clone(),
                endpoints: endpoint_list(&registry, &r.endpoints)?,
                policy: r.load_balancer,
                balancer: registry.balancer(&r.balancer_key),
                outlier: r.outlier.unwrap_or(NO_EJECTION),
                protocol: r.protocol,
                connect_timeout_ms: r.connect_timeout_ms,
                request_timeout_ms: r.request_timeout_ms,
                l7: l7_of(&chain, r.protocol),
                connection_phase: chain.as_ref().is_some_and(|c| c.has_connection_phase()),
                chain,
                subsets,
                load: registry.load(&r.load_key),
            }));
        }
        let check = |i: usize| if i < routes.len() { Ok(i) } else { Err(format!("route index {i} out of range")) };
        let mut vips = HashMap::new();
        for v in &spec.vips {
            let ip = parse_ip(&v.address).ok_or_else(|| format!("service VIP {} is not an IP address", v.address))?;
            vips.insert((ip, v.port), (check(v.inbound)?, check(v.outbound)?));
        }
        let mut workloads = HashMap::new();
        for w in spec.workloads {
            let Some(ip) = parse_ip(&w.workload.address) else { continue };
            workloads.insert(ip, WorkloadRoutes {
                inbound: resolve(w.inbound_chain)?,
                outbound: resolve(w.outbound_chain)?,
                info: w.workload,
                key: w.key,
                service: w.service,
                ports: w.ports,
            });
        }
        let mut names = HashMap::new();
        for n in spec.names {
            names.insert((n.host.to_ascii_lowercase(), n.port), check(n.route)?);
        }
        Ok(State { version: spec.version, limits: spec.limits, routes, vips, workloads, names, registry, workload_routes: Mutex::new(HashMap::new()) })
    }

    /// The route for traffic to `ip:port` seen from `direction`; None: not meshed (passthrough).
    pub fn route(&self, direction: Direction, ip: IpAddr, port: u16) -> Option<Arc<Route>> {
        let ip = canonical(ip);
        if let Some(&(inb, out)) = self.vips.get(&(ip, port)) {
            return Some(self.routes[if direction == Direction::Inbound { inb } else { out }].clone());
        }
        let w = self.workloads.get(&ip)?;
        let mut cache = self.workload_routes.lock().unwrap();
        Some(
            cache
                .entry((direction, ip, port))
                .or_insert_with(|| {
                    let chain = if direction == Direction::Inbound { w.inbound.clone() } else { w.outbound.clone() };
                    let name = format!("{}:{port}", w.key);
                    let protocol = w.ports.get(&port).copied().unwrap_or(Protocol::Auto);
                    Arc::new(Route {
                        service: w.service.clone(),
                        workload: Some(w.info.clone()),
                        endpoints: vec![self.registry.endpoint(SocketAddr::new(ip, port), Some((w.info.name.clone(), w.info.namespace.clone())))],
                        policy: Policy::RoundRobin,
                        balancer: self.registry.balancer(&name),
                        outlier: NO_EJECTION,
                        protocol,
                        connect_timeout_ms: 5_000,
                        request_timeout_ms: 0,
                        l7: l7_of(&chain, protocol),
                        connection_phase: chain.as_ref().is_some_and(|c| c.has_connection_phase()),
                        chain,
                        subsets: HashMap::new(),
                        load: self.registry.load(&w.key),
                        name,
                    })
                })
                .clone(),
        )
    }

    /// Outbound HTTP only: a request whose authority names a mesh service (`name.namespace[.svc…][:port]`).
    pub fn route_by_host(&self, authority: &str, default_port: u16) -> Option<Arc<Route>> {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && !h.contains('[') => (h, p.parse::<u16>().ok()?),
            _ => (authority, default_port),
        };
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if !host.contains('.') {
            return None;
        }
        self.names.get(&(host, port)).map(|&i| self.routes[i].clone())
    }

    /// A workload on another node reached through HBONE: its node's HBONE port and its SPIFFE ID.
    pub fn tunnelled(&self, ip: IpAddr) -> Option<(u16, &str)> {
        let w = &self.workloads.get(&canonical(ip))?.info;
        Some((w.hbone_port?, w.identity.as_str()))
    }

    pub fn workload_by_address(&self, ip: IpAddr) -> Option<&WorkloadSpec> {
        self.workloads.get(&canonical(ip)).map(|w| &w.info)
    }

    /// Where unknown destinations go: where the client sent them, untouched (Istio's PassthroughCluster).
    pub fn passthrough(&self, dest: SocketAddr) -> Arc<Route> {
        Arc::new(Route {
            name: "passthrough".into(),
            service: None,
            workload: None,
            endpoints: vec![self.registry.endpoint(SocketAddr::new(canonical(dest.ip()), dest.port()), None)],
            policy: Policy::RoundRobin,
            balancer: self.registry.balancer("passthrough"),
            outlier: NO_EJECTION,
            protocol: Protocol::Auto,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 0,
            chain: None,
            l7: false,
            connection_phase: false,
            subsets: HashMap::new(),
            load: self.registry.load("passthrough"),
        })
    }
}
