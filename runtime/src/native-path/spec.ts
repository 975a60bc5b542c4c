/**
 * The snapshot the native data path reads (`runtime/native/src/proxy/state.rs`), built from
 * the same state the Node data path uses (`node/state.ts`): every service VIP's route in
 * both directions, every mesh workload with its chains, and the service host names for
 * outbound Host routing. Chains travel as the wasmtime engine's chain ids.
 */
import type { FilterChain } from '../filters/engine.js';
import { nativeChainId } from '../filters/wasmtime/engine.js';
import { AmbitError } from '../deps.js';
import type { BuiltState } from '../node/state.js';
import type { Route } from '../proxy/state.js';
import type { Endpoint } from '../upstream/endpoint.js';

interface EndpointSpec { address: string; port: number; workload?: { name: string; namespace: string } }

interface RouteSpec {
  name: string;
  service?: string;
  workload?: { name: string; namespace: string; address: string; identity: string };
  endpoints: EndpointSpec[];
  loadBalancer: 'round-robin' | 'least-request';
  balancerKey: string;
  outlier: { consecutive5xx: number; baseEjectionMs: number; maxEjectionPercent: number };
  protocol: Route['protocol'];
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  chain?: number;
  subsets: Record<string, EndpointSpec[]>;
  loadKey: string;
}

export interface NativeStateSpec {
  version: number;
  limits: BuiltState['limits'];
  routes: RouteSpec[];
  vips: Array<{ address: string; port: number; inbound: number; outbound: number }>;
  workloads: Array<{
    /** `local`: runs on this node; `hbonePort`: on another node, reached over HBONE at `address:hbonePort` (mTLS only). */
    workload: { name: string; namespace: string; address: string; identity: string; local: boolean; hbonePort?: number };
    key: string; service?: string; inboundChain?: number; outboundChain?: number;
    /** Ports that services selecting it declare, with their protocol: how traffic to `address:port` is parsed (others: auto). */
    ports: Record<string, Route['protocol']>;
  }>;
  names: Array<{ host: string; port: number; route: number }>;
}

function chainId(chain: FilterChain | undefined): number | undefined {
  if (!chain) return undefined;
  const id = nativeChainId(chain);
  if (id === undefined) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', 'proxy.dataPath native runs filters on the wasmtime engine; set proxy.engine to wasmtime or auto (and build @ambit/native)');
  }
  return id;
}

function endpoint(e: Endpoint): EndpointSpec {
  return e.workload ? { address: e.address, port: e.port, workload: { name: e.workload.name, namespace: e.workload.namespace } } : { address: e.address, port: e.port };
}

export function nativeStateSpec(state: BuiltState, options: { mtls: boolean } = { mtls: false }): NativeStateSpec {
  const routes: RouteSpec[] = [];
  const index = new Map<Route, number>();
  const add = (r: Route): number => {
    let i = index.get(r);
    if (i !== undefined) return i;
    i = routes.length;
    index.set(r, i);
    const o = r.outlier;
    routes.push({
      name: r.name,
      service: r.service,
      workload: r.workload ? { name: r.workload.name, namespace: r.workload.namespace, address: r.workload.address, identity: r.workload.identity } : undefined,
      endpoints: r.endpoints.map(endpoint),
      loadBalancer: r.balancer.policy,
      balancerKey: r.service ?? r.name,
      outlier: { consecutive5xx: Number.isFinite(o.consecutive5xx) ? o.consecutive5xx : 0, baseEjectionMs: o.baseEjectionMs, maxEjectionPercent: o.maxEjectionPercent },
      protocol: r.protocol,
      connectTimeoutMs: r.connectTimeoutMs,
      requestTimeoutMs: r.requestTimeoutMs,
      chain: chainId(r.chain),
      subsets: Object.fromEntries([...(r.subsets ?? new Map<string, Endpoint[]>())].map(([k, v]) => [k, v.map(endpoint)])),
      loadKey: r.service ?? r.name,
    });
    return i;
  };
  const vips: NativeStateSpec['vips'] = [];
  const names: NativeStateSpec['names'] = [];
  const td = state.trustDomain;
  for (const s of state.mesh.services.values()) {
    for (const port of s.ports.keys()) {
      const vip = s.config.vip;
      if (vip !== undefined) {
        const inbound = state.route('inbound', vip, port);
        const outbound = state.route('outbound', vip, port);
        if (inbound && outbound) vips.push({ address: vip, port, inbound: add(inbound), outbound: add(outbound) });
      }
      const byName = state.routeByHost?.('outbound', `${s.key}:${port}`, port);
      if (byName) {
        const r = add(byName);
        for (const host of [s.key, `${s.key}.svc`, `${s.key}.svc.cluster.local`, `${s.key}.svc.${td}`]) names.push({ host, port, route: r });
      }
    }
  }
  const workloads: NativeStateSpec['workloads'] = [];
  for (const w of state.mesh.workloads.values()) {
    const plan = (d: 'inbound' | 'outbound') => {
      const key = state.mesh.bindingsFor(d, { workload: w.key }).key;
      return key ? chainId(state.chains.get(key)) : undefined;
    };
    // Like ztunnel, the tunnel dials the workload's own address, at its node's HBONE port.
    const hbonePort = options.mtls && !w.local ? state.tunnelNode?.(w.workload.address)?.port : undefined;
    workloads.push({
      workload: {
        name: w.workload.name, namespace: w.workload.namespace, address: w.workload.address, identity: w.identity, local: w.local,
        ...(hbonePort !== undefined ? { hbonePort } : {}),
      },
      key: w.key,
      service: w.services[0],
      ports: Object.fromEntries(state.mesh.workloadPorts(w)),
      inboundChain: plan('inbound'),
      outboundChain: plan('outbound'),
    });
  }
  return { version: state.version, limits: state.limits, routes, vips, workloads, names };
}
