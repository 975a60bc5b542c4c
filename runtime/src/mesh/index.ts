/**
 * The mesh as the request path asks about it: which service or workload an address is,
 * which endpoints serve it, which filters run. Built once per config generation from a
 * validated config (`loadMeshConfig`), then read-only: every answer is precomputed or
 * memoized into maps, so lookups allocate nothing.
 *
 * ## Which bindings apply (`bindingsFor`)
 *
 * Like Istio's WasmPlugin and AuthorizationPolicy, bindings are additive: every binding
 * of the direction whose target covers the destination applies, a mesh-wide one is not
 * replaced by a service's own. A binding covers a destination when its target is
 * - `{ all: true }`: always (also traffic to destinations the mesh does not know);
 * - `{ namespace }`: the destination service's or workload's namespace;
 * - `{ service }`: the destination service — and, for a workload destination given
 *   without a service (inbound traffic, or outbound traffic to a pod IP), every service
 *   that has the workload as an endpoint;
 * - `{ workload }`: the destination workload.
 *
 * Order: by `priority`, higher first (default 0), then in the order the bindings appear
 * in the file; each binding's filters in their listed order. A binding is applied once
 * even when it covers the destination in several ways. Outbound traffic to a service is
 * matched on the service only: the workload that will serve it is not chosen yet.
 */
import type {
  BindingConfig, Direction, FilterRefConfig, MeshConfig, ServiceConfig, ServicePortConfig, WorkloadConfig,
} from '../config/schema.js';
import { canonicalIp, parseHostPort, serviceKeyOfHost, socketIp } from './address.js';
import { selectorMatches } from './labels.js';

export { selectorMatches } from './labels.js';
export { canonicalIp, parseHostPort, serviceKeyOfHost, socketIp, formatHostPort, type HostPort } from './address.js';

/** An upstream address of a service. The upstream layer's stateful `Endpoint` has this shape too. */
export interface MeshEndpoint {
  readonly address: string;
  readonly port: number;
  /** The workload behind the address, when it is one of the mesh's. */
  readonly workload?: { readonly name: string; readonly namespace: string; readonly serviceAccount: string };
}

/** A service port with its targetPort filled in: a number, or a name each selected workload resolves (`namedPorts`). */
export type ResolvedServicePort = ServicePortConfig & { readonly targetPort: number | string };

export interface ServiceDestination<E extends MeshEndpoint = MeshEndpoint> {
  readonly kind: 'service';
  /** `name.namespace`. */
  readonly key: string;
  readonly service: ServiceConfig;
  readonly servicePort: ResolvedServicePort;
  /** Selected workloads (at the targetPort) then explicit endpoints, without duplicates. */
  readonly endpoints: readonly E[];
}

export interface MeshWorkload {
  /** `name.namespace`. */
  readonly key: string;
  readonly workload: WorkloadConfig;
  /** `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`. */
  readonly identity: string;
  /** Runs on this node. */
  readonly local: boolean;
  /** Keys of the services it is an endpoint of, in config order. */
  readonly services: readonly string[];
}

export interface WorkloadDestination {
  readonly kind: 'workload';
  readonly key: string;
  readonly workload: MeshWorkload;
  readonly port: number;
}

export type Destination<E extends MeshEndpoint = MeshEndpoint> = ServiceDestination<E> | WorkloadDestination;

/** Where the outbound listener sends a connection that has no original destination. */
export type OutboundTarget<E extends MeshEndpoint = MeshEndpoint> =
  | Destination<E>
  | { readonly kind: 'address'; readonly address: string; readonly port: number };

/** One filter of a chain, as configured. */
export interface PlannedFilter {
  /** `/bindings/<i>/filters/<j>`: the key of the resolved filter (`resolveFilters`). */
  readonly id: string;
  /** The binding's name. */
  readonly binding: string;
  readonly filter: FilterRefConfig;
}

/** The ordered filters for a destination. Equal plans are the same object; `key` is stable across lookups. */
export interface FilterPlan {
  /** The filter ids joined with `,`; `''` for no filters. Cache chains by it. */
  readonly key: string;
  readonly filters: readonly PlannedFilter[];
}

export interface MeshIndexOptions<E extends MeshEndpoint> {
  /**
   * Makes the endpoint objects the index hands out, once per distinct address:port (an
   * endpoint shared by two services is one object). Use it to carry load-balancing
   * state, or to keep the previous generation's objects across a reload.
   */
  createEndpoint?: (endpoint: MeshEndpoint) => E;
}

export interface MeshService<E extends MeshEndpoint = MeshEndpoint> {
  /** `name.namespace`. */
  readonly key: string;
  readonly config: ServiceConfig;
  /** By service port. */
  readonly ports: ReadonlyMap<number, ServiceDestination<E>>;
}

interface WorkloadEntry {
  info: MeshWorkload;
  dests: Map<number, WorkloadDestination>;
}

interface PlanTable {
  /** No known destination: `all` bindings only. */
  none: FilterPlan;
  byService: Map<string, FilterPlan>;
  byWorkload: Map<string, FilterPlan>;
  byBoth: Map<string, Map<string, FilterPlan>>;
}

const EMPTY_PLAN: FilterPlan = Object.freeze({ key: '', filters: Object.freeze([]) as readonly PlannedFilter[] });

export class MeshIndex<E extends MeshEndpoint = MeshEndpoint> {
  readonly config: MeshConfig;
  /** The outbound listener's fallback original destination (`proxy.outbound.target`). */
  readonly outboundTarget: OutboundTarget<E> | undefined;
  readonly services: ReadonlyMap<string, MeshService<E>>;
  readonly workloads: ReadonlyMap<string, MeshWorkload>;

  private readonly vips = new Map<string, Map<number, ServiceDestination<E>>>();
  private readonly byIp = new Map<string, WorkloadEntry>();
  private readonly names = new Map<string, MeshService<E>>();
  private readonly plans: Record<Direction, PlanTable>;
  private readonly planCache = new Map<string, FilterPlan>();
  private readonly bindingSubjects: Array<{ binding: BindingConfig; index: number; filters: PlannedFilter[] }>;

  constructor(config: MeshConfig, options: MeshIndexOptions<E> = {}) {
    this.config = config;
    const create = options.createEndpoint ?? ((e: MeshEndpoint) => e as E);
    const endpointObjects = new Map<string, E>();
    const endpoint = (address: string, port: number, w?: WorkloadConfig): E => {
      const k = `${address}\0${port}`;
      let e = endpointObjects.get(k);
      if (!e) {
        const spec: MeshEndpoint = w
          ? { address, port, workload: { name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount } }
          : { address, port };
        e = create(Object.freeze(spec));
        endpointObjects.set(k, e);
      }
      return e;
    };

    // Workloads, and which services each is an endpoint of.
    const workloadServices = new Map<string, string[]>();
    const workloadsByKey = new Map<string, WorkloadConfig>();
    for (const w of config.workloads) {
      const key = `${w.name}.${w.namespace}`;
      workloadsByKey.set(key, w);
      workloadServices.set(key, []);
    }
    const workloadAtIp = new Map<string, { key: string; w: WorkloadConfig }>();
    for (const [key, w] of workloadsByKey) {
      const ip = canonicalIp(w.address);
      if (ip) workloadAtIp.set(ip, { key, w });
    }

    const services = new Map<string, MeshService<E>>();
    for (const s of config.services) {
      const key = `${s.name}.${s.namespace}`;
      const selected = config.workloads.filter((w) => w.namespace === s.namespace && selectorMatches(s.selector, w.labels));
      const explicit = (s.endpoints ?? []).flatMap((e) => {
        const address = canonicalIp(e.address);
        return address ? [{ address, port: e.port }] : [];
      });
      const members = new Set<string>();
      const ports = new Map<number, ServiceDestination<E>>();
      const entry: MeshService<E> = { key, config: s, ports };
      for (const p of s.ports) {
        const targetPort = p.targetPort ?? p.port;
        const list: E[] = [];
        const seen = new Set<E>();
        const add = (e: E) => {
          if (!seen.has(e)) {
            seen.add(e);
            list.push(e);
          }
        };
        for (const w of selected) {
          // A named targetPort is each workload's own port of that name (kube-proxy's way):
          // a workload without one is no endpoint of this port.
          const port = typeof targetPort === 'number' ? targetPort : w.namedPorts?.[targetPort];
          if (port === undefined || (w.ports && !w.ports.includes(port))) continue;
          const ip = canonicalIp(w.address);
          if (!ip) continue;
          add(endpoint(ip, port, w));
          members.add(`${w.name}.${w.namespace}`);
        }
        for (const e of explicit) {
          const at = workloadAtIp.get(e.address);
          const port = e.port ?? (typeof targetPort === 'number' ? targetPort : at?.w.namedPorts?.[targetPort]);
          if (port === undefined) continue;
          add(endpoint(e.address, port, at?.w));
          if (at) members.add(at.key);
        }
        const dest: ServiceDestination<E> = Object.freeze({
          kind: 'service' as const,
          key,
          service: s,
          servicePort: Object.freeze({ ...p, targetPort }),
          endpoints: Object.freeze(list),
        });
        ports.set(p.port, dest);
      }
      for (const m of members) workloadServices.get(m)?.push(key);
      services.set(key, entry);
      for (const name of [key, `${key}.svc`, `${key}.svc.cluster.local`, `${key}.svc.${config.trustDomain}`]) this.names.set(name, entry);
      const vip = s.vip === undefined ? undefined : canonicalIp(s.vip);
      if (vip) {
        let byPort = this.vips.get(vip);
        if (!byPort) this.vips.set(vip, (byPort = new Map()));
        for (const [port, dest] of entry.ports) byPort.set(port, dest);
      }
    }
    this.services = services;

    const workloads = new Map<string, MeshWorkload>();
    for (const [key, w] of workloadsByKey) {
      const info: MeshWorkload = Object.freeze({
        key,
        workload: w,
        identity: `spiffe://${config.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`,
        local: (w.node ?? config.node) === config.node,
        services: Object.freeze(workloadServices.get(key) ?? []),
      });
      workloads.set(key, info);
      const ip = canonicalIp(w.address);
      if (ip) this.byIp.set(ip, { info, dests: new Map() });
    }
    this.workloads = workloads;

    this.bindingSubjects = config.bindings.map((binding, index) => ({
      binding,
      index,
      filters: binding.filters.map((filter, j) => Object.freeze({ id: `/bindings/${index}/filters/${j}`, binding: binding.name, filter })),
    }));
    // Priority first (higher runs first), then file order: Array.prototype.sort is stable.
    this.bindingSubjects.sort((a, b) => (b.binding.priority ?? 0) - (a.binding.priority ?? 0));
    this.plans = { inbound: this.planTable('inbound'), outbound: this.planTable('outbound') };
    this.outboundTarget = this.resolveOutboundTarget();
  }

  /**
   * What a connection to `ip:port` reaches: a service (its VIP and port), else a mesh
   * workload (its address, any port), else undefined (passthrough). Takes socket
   * addresses as they come, IPv4-mapped IPv6 included.
   */
  destination(ip: string, port: number): Destination<E> | undefined {
    const addr = socketIp(ip);
    const d = this.vips.get(addr)?.get(port);
    if (d) return d;
    const w = this.byIp.get(addr);
    return w ? workloadDestination(w, port) : undefined;
  }

  /**
   * The workload's ports that services selecting it declare (by number, or by the workload's
   * port name), with the protocol of the first such service port in config order: how
   * traffic addressed to the workload itself at that port is parsed.
   */
  workloadPorts(w: MeshWorkload): Map<number, ServicePortConfig['protocol']> {
    const out = new Map<number, ServicePortConfig['protocol']>();
    for (const key of w.services) {
      for (const d of this.services.get(key)?.ports.values() ?? []) {
        const t = d.servicePort.targetPort;
        const port = typeof t === 'number' ? t : w.workload.namedPorts?.[t];
        if (port !== undefined && !out.has(port)) out.set(port, d.servicePort.protocol);
      }
    }
    return out;
  }

  /**
   * A service by host name and port: `name.namespace`, `name.namespace.svc`,
   * `name.namespace.svc.<cluster domain>` (case-insensitive, trailing dot allowed).
   */
  serviceByName(host: string, port: number): ServiceDestination<E> | undefined {
    let entry = this.names.get(host);
    if (!entry) {
      const key = serviceKeyOfHost(host);
      if (key === undefined) return undefined;
      entry = this.names.get(key);
    }
    return entry?.ports.get(port);
  }

  /** The mesh workload at an address (socket form accepted). */
  workloadByAddress(ip: string): MeshWorkload | undefined {
    return this.byIp.get(socketIp(ip))?.info;
  }

  /**
   * The filters for traffic in `direction` to a destination given by service and/or
   * workload key (`name.namespace`; `ServiceDestination.key`, `MeshWorkload.key`). Keys
   * the config does not know are ignored. See the module comment for which bindings
   * apply and in which order.
   */
  bindingsFor(direction: Direction, dest: { service?: string | undefined; workload?: string | undefined } = {}): FilterPlan {
    const table = this.plans[direction];
    const s = dest.service !== undefined && this.services.has(dest.service) ? dest.service : undefined;
    const w = dest.workload !== undefined && this.workloads.has(dest.workload) ? dest.workload : undefined;
    if (s === undefined) return w === undefined ? table.none : table.byWorkload.get(w)!;
    if (w === undefined) return table.byService.get(s)!;
    let inner = table.byBoth.get(s);
    if (!inner) table.byBoth.set(s, (inner = new Map()));
    let plan = inner.get(w);
    if (!plan) inner.set(w, (plan = this.plan(direction, s, w, false)));
    return plan;
  }

  private planTable(direction: Direction): PlanTable {
    const table: PlanTable = { none: this.plan(direction, undefined, undefined, false), byService: new Map(), byWorkload: new Map(), byBoth: new Map() };
    for (const s of this.services.keys()) table.byService.set(s, this.plan(direction, s, undefined, false));
    for (const w of this.workloads.keys()) table.byWorkload.set(w, this.plan(direction, undefined, w, true));
    return table;
  }

  private plan(direction: Direction, service: string | undefined, workload: string | undefined, workloadServices: boolean): FilterPlan {
    const serviceKeys = new Set<string>();
    if (service !== undefined) serviceKeys.add(service);
    const w = workload === undefined ? undefined : this.workloads.get(workload);
    if (w && workloadServices) for (const k of w.services) serviceKeys.add(k);
    const namespaces = new Set<string>();
    if (service !== undefined) namespaces.add(this.services.get(service)!.config.namespace);
    if (w) namespaces.add(w.workload.namespace);

    const filters: PlannedFilter[] = [];
    for (const { binding, filters: fs } of this.bindingSubjects) {
      if (binding.direction !== direction) continue;
      const t = binding.target;
      const covers = 'all' in t
        || ('namespace' in t && namespaces.has(t.namespace))
        || ('service' in t && serviceKeys.has(t.service))
        || ('workload' in t && workload !== undefined && t.workload === workload);
      if (covers) filters.push(...fs);
    }
    if (filters.length === 0) return EMPTY_PLAN;
    const key = filters.map((f) => f.id).join(',');
    let plan = this.planCache.get(key);
    if (!plan) this.planCache.set(key, (plan = Object.freeze({ key, filters: Object.freeze(filters) })));
    return plan;
  }

  private resolveOutboundTarget(): OutboundTarget<E> | undefined {
    const target = this.config.proxy.outbound.target;
    if (target === undefined) return undefined;
    const hp = parseHostPort(target);
    if (!hp) return undefined;
    if (hp.kind === 'name') return this.serviceByName(hp.host, hp.port);
    return this.destination(hp.address, hp.port) ?? Object.freeze({ kind: 'address' as const, address: hp.address, port: hp.port });
  }
}

function workloadDestination(w: WorkloadEntry, port: number): WorkloadDestination {
  let d = w.dests.get(port);
  if (!d) w.dests.set(port, (d = Object.freeze({ kind: 'workload' as const, key: w.info.key, workload: w.info, port })));
  return d;
}
