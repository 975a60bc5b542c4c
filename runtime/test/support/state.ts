/** A hand-built ProxyState for data-path tests that don't go through the YAML config. */
import type { Direction } from '@ambit/filter-sdk/host';
import type { FilterChain, ProxyLimits, ProxyState, Route, WorkloadInfo } from '@ambit/runtime';
import { Balancer, DEFAULT_LIMITS, DEFAULT_OUTLIER, Endpoint } from '@ambit/runtime';

export interface RouteSpec {
  address: string;
  port: number;
  direction?: Direction;
  name?: string;
  service?: string;
  endpoints: Array<[string, number]>;
  chain?: FilterChain;
  protocol?: Route['protocol'];
  balancer?: 'round-robin' | 'least-request';
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  outlier?: Partial<Route['outlier']>;
}

export function staticState(spec: { routes: RouteSpec[]; workloads?: WorkloadInfo[]; limits?: Partial<ProxyLimits>; version?: number }): ProxyState & { closed: boolean } {
  const routes = new Map<string, Route>();
  for (const r of spec.routes) {
    const phases = new Set(r.chain?.filters.flatMap((f) => f.phases) ?? []);
    routes.set(`${r.direction ?? 'outbound'}|${r.address}|${r.port}`, {
      name: r.name ?? r.service ?? `${r.address}:${r.port}`,
      service: r.service,
      endpoints: r.endpoints.map(([a, p]) => new Endpoint(a, p)),
      balancer: new Balancer(r.balancer ?? 'round-robin'),
      outlier: { ...DEFAULT_OUTLIER, ...r.outlier },
      protocol: r.protocol ?? 'auto',
      connectTimeoutMs: r.connectTimeoutMs ?? 2_000,
      requestTimeoutMs: r.requestTimeoutMs ?? 10_000,
      chain: r.chain,
      l7: phases.has('requestHeaders') || phases.has('responseHeaders'),
      connectionPhase: phases.has('connection'),
    });
  }
  const workloads = new Map((spec.workloads ?? []).map((w) => [w.address, w]));
  const state = {
    version: spec.version ?? 1,
    trustDomain: 'mesh.test',
    limits: { ...DEFAULT_LIMITS, ...spec.limits },
    closed: false,
    route: (d: Direction, a: string, p: number) => routes.get(`${d}|${a}|${p}`),
    workloadByAddress: (a: string) => workloads.get(a),
    retain: () => () => {},
    async close() {
      state.closed = true;
      await Promise.all(spec.routes.map((r) => r.chain?.close()));
    },
  };
  return state;
}
