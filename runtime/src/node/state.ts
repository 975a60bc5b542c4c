/**
 * Builds the data path's state snapshot from a loaded mesh config: the mesh index,
 * one filter chain per distinct filter plan (created before the swap, so a reload
 * never serves a half-built state), and routes looked up by destination.
 */
import { reportFailures } from '../filters/report-failures.js';
import type { Direction } from '../deps.js';
import type { LoadedMeshConfig, ResolvedFilters, ServiceConfig } from '../config/index.js';
import { chainBindings } from '../config/index.js';
import type { FilterChain, FilterEngine } from '../filters/engine.js';
import { MeshIndex, selectorMatches, serviceKeyOfHost, type Destination, type FilterPlan, type MeshEndpoint, type MeshWorkload } from '../mesh/index.js';
import { DEFAULT_LIMITS, RetainCount, newServiceLoad, type ServiceLoadCounter, type ProxyLimits, type ProxyState, type Route, type TunnelNode, type WorkloadInfo } from '../proxy/state.js';
import { canonicalIp } from '../mesh/address.js';
import { Balancer } from '../upstream/balancer.js';
import { Endpoint, endpointKey, type OutlierPolicy } from '../upstream/endpoint.js';

/** Endpoint objects live across reloads so load and outlier state survive them. */
export class EndpointRegistry {
  private readonly byKey = new Map<string, Endpoint>();

  get(m: MeshEndpoint): Endpoint {
    const key = endpointKey(m.address, m.port);
    let e = this.byKey.get(key);
    if (!e) {
      e = new Endpoint(m.address, m.port, m.workload);
      this.byKey.set(key, e);
    }
    return e;
  }
}

export interface BuiltState extends ProxyState {
  readonly mesh: MeshIndex<Endpoint>;
  readonly loaded: LoadedMeshConfig;
  readonly resolved: ResolvedFilters;
  /** Chains by plan key, for /config_dump. */
  readonly chains: ReadonlyMap<string, FilterChain>;
}

function workloadInfo(w: MeshWorkload): WorkloadInfo {
  return { name: w.workload.name, namespace: w.workload.namespace, serviceAccount: w.workload.serviceAccount, address: w.workload.address, identity: w.identity, local: w.local };
}

function outlierOf(s: ServiceConfig): OutlierPolicy {
  const o = s.outlierDetection;
  return { consecutive5xx: o.consecutive5xx === 0 ? Number.POSITIVE_INFINITY : o.consecutive5xx, baseEjectionMs: o.baseEjectionMs, maxEjectionPercent: o.maxEjectionPercent };
}

const NO_EJECTION: OutlierPolicy = { consecutive5xx: Number.POSITIVE_INFINITY, baseEjectionMs: 30_000, maxEjectionPercent: 0 };

export async function buildState(
  loaded: LoadedMeshConfig, resolved: ResolvedFilters, engine: FilterEngine, endpoints: EndpointRegistry, version: number,
): Promise<BuiltState> {
  const config = loaded.config;
  const mesh = new MeshIndex<Endpoint>(config, { createEndpoint: (m) => endpoints.get(m) });
  const limits: ProxyLimits & { drainTimeoutMs: number } = { ...DEFAULT_LIMITS, ...config.proxy.limits };

  // Every plan a destination can have, each made into a chain once.
  const plans = new Map<string, FilterPlan>();
  const add = (p: FilterPlan) => { if (p.key !== '') plans.set(p.key, p); };
  for (const d of ['inbound', 'outbound'] as const) add(mesh.bindingsFor(d));
  for (const s of mesh.services.keys()) add(mesh.bindingsFor('outbound', { service: s }));
  for (const w of mesh.workloads.values()) {
    add(mesh.bindingsFor('outbound', { workload: w.key }));
    add(mesh.bindingsFor('inbound', { workload: w.key }));
  }
  const chains = new Map<string, FilterChain>();
  try {
    for (const [key, plan] of plans) {
      const bindings = chainBindings(plan, resolved);
      chains.set(key, reportFailures(await engine.createChain(bindings), bindings));
    }
  } catch (e) {
    await Promise.all([...chains.values()].map((c) => c.close()));
    throw e;
  }

  const balancers = new Map<string, Balancer>();
  const balancerFor = (key: string, policy: ServiceConfig['loadBalancer']) => {
    let b = balancers.get(key);
    if (!b) balancers.set(key, (b = new Balancer(policy)));
    return b;
  };
  // Subsets (by service key): the service's endpoints whose workloads carry the subset's labels.
  const subsetsOf = (dest: Extract<Destination<Endpoint>, { kind: 'service' }>): ReadonlyMap<string, Endpoint[]> | undefined => {
    const defs = dest.service.subsets;
    if (!defs || defs.length === 0) return undefined;
    const out = new Map<string, Endpoint[]>();
    for (const sub of defs) {
      out.set(sub.name, (dest.endpoints as Endpoint[]).filter((e) => {
        const w = e.workload ? mesh.workloads.get(`${e.workload.name}.${e.workload.namespace}`) : undefined;
        return w !== undefined && selectorMatches(sub.labels, w.workload.labels);
      }));
    }
    return out;
  };
  const loads = new Map<string, ServiceLoadCounter>();
  const loadOf = (key: string): ServiceLoadCounter => {
    let l = loads.get(key);
    if (!l) loads.set(key, (l = newServiceLoad()));
    return l;
  };
  const routes = new Map<Destination<Endpoint>, Route>();
  const inboundRoutes = new Map<Destination<Endpoint>, Route>();

  const withChain = (r: Omit<Route, 'chain' | 'l7' | 'connectionPhase'>, plan: FilterPlan): Route => {
    const chain = plan.key ? chains.get(plan.key) : undefined;
    const phases = new Set(chain?.filters.flatMap((f) => f.phases) ?? []);
    // HTTP is parsed where a filter needs it, or where the port is declared HTTP (for
    // per-request metrics, retries of upstream failures and Host routing).
    const l7 = phases.has('requestHeaders') || phases.has('responseHeaders') || r.protocol === 'http' || r.protocol === 'http2';
    const policyKey = chain
      ? plan.filters.map((f) => { const b = resolved.filters.get(f.id)?.binding; return b ? `${b.name}:${b.sha256}:${JSON.stringify(b.config)}` : f.id; }).join('|')
      : undefined;
    return { ...r, chain, l7, connectionPhase: phases.has('connection'), ...(policyKey !== undefined ? { policyKey } : {}) };
  };

  const routeFor = (direction: Direction, dest: Destination<Endpoint>): Route => {
    const cache = direction === 'inbound' ? inboundRoutes : routes;
    let r = cache.get(dest);
    if (r) return r;
    if (dest.kind === 'service') {
      const s = dest.service;
      // Inbound traffic addressed to a service VIP still lands on a local workload; the
      // service's bindings apply through the workload's plan.
      r = withChain({
        name: `${dest.key}:${dest.servicePort.port}`,
        service: dest.key,
        endpoints: dest.endpoints as Endpoint[],
        balancer: balancerFor(dest.key, s.loadBalancer),
        outlier: outlierOf(s),
        protocol: dest.servicePort.protocol,
        connectTimeoutMs: s.connectTimeoutMs,
        requestTimeoutMs: s.perTryTimeoutMs > 0 ? s.perTryTimeoutMs : s.requestTimeoutMs,
        subsets: subsetsOf(dest),
        load: loadOf(dest.key),
      }, mesh.bindingsFor(direction, { service: dest.key }));
    } else {
      const w = dest.workload;
      // As the services selecting it declare this port (Istio's way); auto when none does.
      const protocol = mesh.workloadPorts(w).get(dest.port) ?? 'auto';
      r = withChain({
        name: `${w.key}:${dest.port}`,
        service: w.services[0],
        workload: workloadInfo(w),
        endpoints: [endpoints.get({ address: w.workload.address, port: dest.port, workload: { name: w.workload.name, namespace: w.workload.namespace, serviceAccount: w.workload.serviceAccount } })],
        balancer: balancerFor(`${w.key}:${dest.port}`, 'round-robin'),
        outlier: NO_EJECTION,
        protocol,
        connectTimeoutMs: 5_000,
        requestTimeoutMs: 0,
        load: loadOf(w.key),
      }, mesh.bindingsFor(direction, { workload: w.key }));
    }
    cache.set(dest, r);
    return r;
  };

  // Workloads on other nodes that have an HBONE address: their traffic is tunnelled.
  const nodes = new Map(config.nodes.map((n) => [n.name, { name: n.name, address: canonicalIp(n.address) ?? n.address, port: n.hbonePort }]));
  const tunnelNodes = new Map<string, TunnelNode>();
  for (const w of mesh.workloads.values()) {
    const node = w.local ? undefined : nodes.get(w.workload.node ?? config.node);
    const ip = canonicalIp(w.workload.address);
    if (node && ip) tunnelNodes.set(ip, node);
  }

  let closed: Promise<void> | undefined;
  const users = new RetainCount();
  return {
    version,
    trustDomain: config.trustDomain,
    limits,
    mesh,
    loaded,
    resolved,
    chains,
    route(direction, address, port) {
      const dest = mesh.destination(address, port);
      return dest ? routeFor(direction, dest) : undefined;
    },
    routeByHost(direction, authority, defaultPort) {
      let host = authority;
      let port = defaultPort;
      const m = /^([^:[\]]+):(\d{1,5})$/.exec(authority);
      if (m) { host = m[1]!; port = Number(m[2]); }
      if (!serviceKeyOfHost(host)) return undefined;
      const dest = mesh.serviceByName(host, port);
      return dest ? routeFor(direction, dest) : undefined;
    },
    workloadByAddress(address) {
      const w = mesh.workloadByAddress(address);
      return w ? workloadInfo(w) : undefined;
    },
    tunnelNode(address) {
      return tunnelNodes.get(canonicalIp(address) ?? address);
    },
    retain: () => users.retain(),
    close(drainMs = limits.drainTimeoutMs) {
      closed ??= users.drained(drainMs).then(() => Promise.all([...chains.values()].map((c) => c.close()))).then(() => undefined);
      return closed;
    },
  };
}
