/**
 * The mesh as node proxies see it, kept up to date from the cluster: each informer event
 * recomputes only what depends on the object (a pod → its workload, its namespace's authz
 * and selector bindings; a Service → its service; an AuthorizationPolicy → the authz
 * bindings of its namespace, or of every namespace from the root namespace; …) into the
 * ResourceTable, which collects the resources whose bodies changed.
 */
import type { V1Namespace, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import type { BindingConfig, SubsetConfig } from '@ambit/runtime';
import type { FilterBinding } from '../crd/schema.js';
import { mapAuthorizationPolicy, type AuthorizationPolicy, type AuthzPolicyConfig } from '../translate/authz.js';
import { filterRefs, type FilterCheck } from '../translate/filterbinding.js';
import { composeRoutes, mapHttpRoute, type HttpRoute, type RouteEntry } from '../translate/httproute.js';
import { isDnsLabel, reaches, selectorMatches } from '../translate/labels.js';
import { serviceOf } from '../translate/services.js';
import { nodeOf, workloadOf } from '../translate/workloads.js';
import { resource, ResourceTable } from './table.js';

/** Authz bindings run before any FilterBinding (priority ≤ 1000). */
export const AUTHZ_PRIORITY = 2000;
export const AUTHZ_PACKAGE = '@ambit/filter-authz';
export const TRAFFIC_SPLIT_PACKAGE = '@ambit/filter-traffic-split';

export interface MeshSettings {
  trustDomain: string;
  rootNamespace: string;
  certTtlMs: number;
  /** PEM trust anchors, sent to nodes. */
  roots: string;
}

/** Where a binding resource came from, to report a node's rejection on it. */
export type BindingOrigin =
  | { kind: 'FilterBinding'; namespace: string; name: string }
  | { kind: 'AuthorizationPolicy'; namespace: string; workload: string }
  | { kind: 'HTTPRoute'; namespace: string; name: string };

export interface Problems {
  /** A source object's unsupported parts (AuthorizationPolicy, HTTPRoute): reported as Events. */
  report(kind: 'AuthorizationPolicy' | 'HTTPRoute', obj: { metadata: { name: string; namespace: string; uid?: string; generation?: number } }, lines: string[]): void;
}

export class MeshModel {
  readonly table = new ResourceTable();
  readonly namespaces = new Map<string, V1Namespace>();
  readonly pods = new Map<string, V1Pod>();
  readonly podsByNamespace = new Map<string, Map<string, V1Pod>>();
  readonly services = new Map<string, V1Service>();
  readonly authz = new Map<string, AuthorizationPolicy>();
  readonly routes = new Map<string, HttpRoute>();
  readonly filterBindings = new Map<string, { fb: FilterBinding; check: FilterCheck | undefined }>();
  /** Subsets HTTPRoutes put on services: service key → route key → subsets. */
  /** Parent service key → the HTTPRoutes attached to it (route key → its subsets and routes). */
  readonly #routeSubsets = new Map<string, Map<string, { route: HttpRoute; subsets: SubsetConfig[]; entries: RouteEntry[] }>>();
  /** Nodes whose local pods changed since the last `takeDirtyNodes`. */
  #dirtyNodes = new Set<string>();
  /** node → namespace → local workload count. */
  readonly #localNamespaces = new Map<string, Map<string, number>>();
  readonly #podNode = new Map<string, { node: string; namespace: string }>();
  /** node → pods scheduled on it (whatever their state), for certificate requests. */
  readonly #podsOnNode = new Map<string, Map<string, V1Pod>>();

  constructor(private settings: MeshSettings, private readonly problems: Problems) {
    this.#setMesh();
  }

  setRoots(roots: string): void {
    this.settings = { ...this.settings, roots };
    this.#setMesh();
  }

  #setMesh(): void {
    this.table.setOwned('mesh', [resource('mesh', 'mesh', undefined, {
      trustDomain: this.settings.trustDomain,
      identity: { ca: { controller: true }, certTtlMs: this.settings.certTtlMs },
      roots: this.settings.roots,
    })]);
  }

  // ---- events --------------------------------------------------------------------------

  namespace(kind: 'add' | 'update' | 'delete', ns: V1Namespace): void {
    const name = ns.metadata!.name!;
    if (kind === 'delete') this.namespaces.delete(name);
    else this.namespaces.set(name, ns);
    // Enrollment and reach may have changed: its pods' workloads, and its nodes' scopes.
    for (const pod of this.podsByNamespace.get(name)?.values() ?? []) this.#setPod(pod);
    for (const [node, nss] of this.#localNamespaces) if (nss.has(name)) this.#dirtyNodes.add(node);
  }

  node(kind: 'add' | 'update' | 'delete', node: V1Node): void {
    const n = kind === 'delete' ? undefined : nodeOf(node);
    this.table.setOwned(`Node/${node.metadata!.name}`, n ? [resource('node', n.name, undefined, n)] : []);
  }

  pod(kind: 'add' | 'update' | 'delete', pod: V1Pod): void {
    const ns = pod.metadata!.namespace!;
    const key = `${ns}/${pod.metadata!.name}`;
    let inNs = this.podsByNamespace.get(ns);
    const before = this.pods.get(key)?.spec?.nodeName;
    if (before) this.#podsOnNode.get(before)?.delete(key);
    if (kind !== 'delete' && pod.spec?.nodeName) {
      let m = this.#podsOnNode.get(pod.spec.nodeName);
      if (!m) this.#podsOnNode.set(pod.spec.nodeName, (m = new Map()));
      m.set(key, pod);
    }
    if (kind === 'delete') {
      this.pods.delete(key);
      inNs?.delete(key);
      this.#placePod(key, undefined);
      this.table.setOwned(`Pod/${key}`, []);
    } else {
      this.pods.set(key, pod);
      if (!inNs) this.podsByNamespace.set(ns, (inNs = new Map()));
      inNs.set(key, pod);
      this.#setPod(pod);
    }
    this.#namespaceBindings(ns);
  }

  service(kind: 'add' | 'update' | 'delete', svc: V1Service): void {
    const key = `${svc.metadata!.namespace}/${svc.metadata!.name}`;
    if (kind === 'delete') this.services.delete(key);
    else this.services.set(key, svc);
    this.#setService(key);
    // Routes and service-targeted bindings read services.
    for (const [rk, r] of this.routes) if (r.metadata.namespace === svc.metadata!.namespace) this.#setRoute(rk);
    for (const [fk, f] of this.filterBindings) if (f.fb.metadata.namespace === svc.metadata!.namespace) this.#setFilterBinding(fk);
  }

  authorizationPolicy(kind: 'add' | 'update' | 'delete', ap: AuthorizationPolicy): void {
    const key = `${ap.metadata.namespace}/${ap.metadata.name}`;
    if (kind === 'delete') this.authz.delete(key);
    else this.authz.set(key, ap);
    if (kind !== 'delete') {
      const { unsupported } = mapAuthorizationPolicy(ap);
      if (unsupported.length > 0) this.problems.report('AuthorizationPolicy', ap, unsupported);
    }
    if (ap.metadata.namespace === this.settings.rootNamespace) for (const ns of this.podsByNamespace.keys()) this.#setAuthz(ns);
    else this.#setAuthz(ap.metadata.namespace);
  }

  httpRoute(kind: 'add' | 'update' | 'delete', route: HttpRoute): void {
    const key = `${route.metadata.namespace}/${route.metadata.name}`;
    if (kind === 'delete') this.routes.delete(key);
    else this.routes.set(key, route);
    this.#setRoute(key, kind !== 'delete');
  }

  /** A FilterBinding and the result of checking its filters (undefined: not checked yet). */
  filterBinding(kind: 'add' | 'update' | 'delete', fb: FilterBinding, check: FilterCheck | undefined): void {
    const key = `${fb.metadata.namespace}/${fb.metadata.name}`;
    if (kind === 'delete') this.filterBindings.delete(key);
    else this.filterBindings.set(key, { fb, check });
    this.#setFilterBinding(key);
  }

  // ---- node scopes ------------------------------------------------------------------------

  /** Namespaces whose resources node `node` receives: its workloads' and those they reach. */
  scopeOf(node: string): Set<string> | '*' {
    const local = this.#localNamespaces.get(node);
    const scope = new Set<string>();
    for (const ns of local?.keys() ?? []) {
      scope.add(ns);
      const r = reaches(this.namespaces.get(ns));
      if (r === '*') return '*';
      for (const x of r) scope.add(x);
    }
    return scope;
  }

  /**
   * Whether node `other`'s entry (its HBONE address) concerns a node seeing `scope`: it runs
   * workloads of a namespace in it. A node always sees itself.
   */
  nodeConcerns(other: string, scope: ReadonlySet<string> | '*'): boolean {
    if (scope === '*') return true;
    for (const ns of this.#localNamespaces.get(other)?.keys() ?? []) if (scope.has(ns)) return true;
    return false;
  }

  /** Pods scheduled on `node` (spec.nodeName). */
  podsOn(node: string): Iterable<V1Pod> {
    return this.#podsOnNode.get(node)?.values() ?? [];
  }

  takeDirtyNodes(): Set<string> {
    const d = this.#dirtyNodes;
    this.#dirtyNodes = new Set();
    return d;
  }

  /** Where a binding resource came from. */
  bindingOrigin(name: string): BindingOrigin | undefined {
    const [kind, ns, n] = name.split('/');
    if (kind === 'fb' && ns && n) return { kind: 'FilterBinding', namespace: ns, name: n };
    if (kind === 'authz' && ns && n) return { kind: 'AuthorizationPolicy', namespace: ns, workload: n };
    if (kind === 'route' && ns && n) return { kind: 'HTTPRoute', namespace: ns, name: n };
    return undefined;
  }

  // ---- recomputation ----------------------------------------------------------------------

  #setPod(pod: V1Pod): void {
    const ns = pod.metadata!.namespace!;
    const key = `${ns}/${pod.metadata!.name}`;
    const w = workloadOf(pod, this.namespaces.get(ns));
    this.#placePod(key, w ? { node: w.node!, namespace: ns } : undefined);
    this.table.setOwned(`Pod/${key}`, w ? [resource('workload', `${w.name}.${w.namespace}`, ns, w)] : []);
  }

  #placePod(key: string, at: { node: string; namespace: string } | undefined): void {
    const before = this.#podNode.get(key);
    if (before?.node === at?.node && before?.namespace === at?.namespace) return;
    if (before) {
      const m = this.#localNamespaces.get(before.node)!;
      const n = (m.get(before.namespace) ?? 1) - 1;
      if (n <= 0) {
        m.delete(before.namespace);
        this.#dirtyNodes.add(before.node);
        this.table.touch(`node/${before.node}`);
      } else m.set(before.namespace, n);
      this.#podNode.delete(key);
    }
    if (at) {
      let m = this.#localNamespaces.get(at.node);
      if (!m) this.#localNamespaces.set(at.node, (m = new Map()));
      const n = m.get(at.namespace) ?? 0;
      m.set(at.namespace, n + 1);
      if (n === 0) {
        this.#dirtyNodes.add(at.node);
        this.table.touch(`node/${at.node}`);
      }
      this.#podNode.set(key, at);
    }
  }

  #setService(key: string): void {
    const svc = this.services.get(key);
    const [ns] = key.split('/');
    const subsets = [...(this.#routeSubsets.get(key)?.values() ?? [])].flatMap((r) => r.subsets);
    const s = svc ? serviceOf(svc, dedupeSubsets(subsets)) : undefined;
    this.table.setOwned(`Service/${key}`, s ? [resource('service', `${s.name}.${s.namespace}`, ns, s)] : []);
  }

  /** Everything in a namespace computed from its pods' labels. */
  #namespaceBindings(ns: string): void {
    this.#setAuthz(ns);
    for (const [fk, f] of this.filterBindings) if (f.fb.metadata.namespace === ns && f.fb.spec.target?.selector) this.#setFilterBinding(fk);
  }

  /** The authz bindings of a namespace's workloads: one per workload, every policy that applies to it merged. */
  #setAuthz(ns: string): void {
    const applicable = [...this.authz.values()].filter((ap) => ap.metadata.namespace === ns || ap.metadata.namespace === this.settings.rootNamespace);
    const out = [];
    if (applicable.length > 0) {
      const mapped = applicable
        .sort((a, b) => (`${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1))
        .map((ap) => ({ ap, policy: mapAuthorizationPolicy(ap).policy }))
        .filter((m): m is { ap: AuthorizationPolicy; policy: AuthzPolicyConfig } => m.policy !== undefined);
      for (const pod of this.podsByNamespace.get(ns)?.values() ?? []) {
        const w = workloadOf(pod, this.namespaces.get(ns));
        if (!w) continue;
        const policies = mapped.filter(({ ap }) => {
          const sel = ap.spec?.selector?.matchLabels;
          return !sel || Object.keys(sel).length === 0 || selectorMatches(sel, w.labels);
        }).map((m) => m.policy);
        if (policies.length === 0) continue;
        const b: BindingConfig = {
          name: `authz/${ns}/${w.name}`,
          target: { workload: `${w.name}.${ns}` },
          direction: 'inbound',
          priority: AUTHZ_PRIORITY,
          // A built-in filter, installed with the node proxy: the node's own install pins it.
          filters: [{ ref: AUTHZ_PACKAGE, name: 'authz', config: { policies }, failurePolicy: 'fail-closed', deadlineMs: 50, memoryMaxPages: 1024, instances: 'pooled', allowUnpinned: true, maxKeys: 4096 }],
        };
        out.push(resource('binding', b.name, ns, b));
      }
    }
    this.table.setOwned(`authz/${ns}`, out);
  }

  #setRoute(key: string, report = false): void {
    const route = this.routes.get(key);
    const [ns] = key.split('/');
    const affected = [...this.#routeSubsets].filter(([, m]) => m.has(key)).map(([svc]) => svc);
    for (const svc of affected) this.#routeSubsets.get(svc)!.delete(key);
    if (route) {
      const mapped = mapHttpRoute(route, (name) => this.services.get(`${ns}/${name}`));
      if (report && mapped.problems.length > 0) this.problems.report('HTTPRoute', route, mapped.problems);
      for (const p of mapped.parents) {
        const svcKey = `${ns}/${p.service}`;
        let m = this.#routeSubsets.get(svcKey);
        if (!m) this.#routeSubsets.set(svcKey, (m = new Map()));
        m.set(key, { route, subsets: p.subsets, entries: p.entries });
        if (!affected.includes(svcKey)) affected.push(svcKey);
      }
    }
    for (const svc of affected) {
      this.#setRouteBinding(svc);
      this.#setService(svc);
    }
  }

  /** One traffic-split binding per parent Service, from every HTTPRoute attached to it, in precedence order. */
  #setRouteBinding(svcKey: string): void {
    const attached = [...(this.#routeSubsets.get(svcKey)?.values() ?? [])];
    const [ns, name] = svcKey.split('/') as [string, string];
    const out = [];
    if (attached.length > 0) {
      const b: BindingConfig = {
        name: `route/${ns}/${name}`,
        target: { service: `${name}.${ns}` },
        direction: 'outbound',
        priority: 0,
        // A built-in filter, installed with the node proxy: the node's own install pins it.
        filters: [{ ref: TRAFFIC_SPLIT_PACKAGE, name: 'traffic-split', config: composeRoutes(attached), failurePolicy: 'fail-closed', deadlineMs: 50, memoryMaxPages: 1024, instances: 'pooled', allowUnpinned: true, maxKeys: 4096 }],
      };
      out.push(resource('binding', b.name, ns, b));
    }
    this.table.setOwned(`HTTPRoutes/${svcKey}`, out);
  }

  #setFilterBinding(key: string): void {
    const entry = this.filterBindings.get(key);
    const out = [];
    if (entry?.check?.ok) {
      const { fb } = entry;
      const ns = fb.metadata.namespace;
      const base = { direction: fb.spec.direction, priority: fb.spec.priority ?? 0, filters: filterRefs(fb) };
      const t = fb.spec.target;
      if (t?.service) {
        if (this.services.has(`${ns}/${t.service}`) && serviceOf(this.services.get(`${ns}/${t.service}`)!)) {
          out.push(resource('binding', `fb/${key}`, ns, { name: `fb/${key}`, target: { service: `${t.service}.${ns}` }, ...base }));
        }
      } else if (t?.selector) {
        for (const pod of this.podsByNamespace.get(ns)?.values() ?? []) {
          const w = workloadOf(pod, this.namespaces.get(ns));
          if (!w || !selectorMatches(t.selector.matchLabels, w.labels)) continue;
          const name = `fb/${key}/${w.name}`;
          out.push(resource('binding', name, ns, { name, target: { workload: `${w.name}.${ns}` }, ...base }));
        }
      } else if (isDnsLabel(ns)) {
        out.push(resource('binding', `fb/${key}`, ns, { name: `fb/${key}`, target: { namespace: ns }, ...base }));
      }
    }
    this.table.setOwned(`FilterBinding/${key}`, out);
  }
}

function dedupeSubsets(subsets: SubsetConfig[]): SubsetConfig[] {
  const seen = new Map<string, SubsetConfig>();
  for (const s of subsets) if (!seen.has(s.name)) seen.set(s.name, s);
  return [...seen.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}
