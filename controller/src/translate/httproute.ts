/**
 * Gateway API HTTPRoute with a Service parentRef (GAMMA, mesh routing) → the traffic-split
 * filter on the parent Service, outbound.
 *
 * Weighted `backendRefs` become subsets of the parent: the backend Service's selector names
 * the subset's pods (so `reviews-v1` selecting `app=reviews,version=v1` under `reviews`
 * selecting `app=reviews`). Supported: one rule without matches (or a `/` PathPrefix), Service
 * backends in the route's namespace whose selector narrows the parent's. Everything else is
 * reported (an Event on the route) and the route is not applied.
 */
import type { V1Service } from '@kubernetes/client-node';
import type { SubsetConfig } from '@ambit/runtime';

export interface HttpRoute {
  metadata: { name: string; namespace: string; uid?: string; generation?: number };
  spec?: {
    parentRefs?: { group?: string; kind?: string; name: string; namespace?: string; port?: number }[];
    rules?: {
      matches?: { path?: { type?: string; value?: string }; headers?: unknown; queryParams?: unknown; method?: unknown }[];
      filters?: unknown[];
      backendRefs?: { group?: string; kind?: string; name: string; namespace?: string; port?: number; weight?: number; filters?: unknown[] }[];
      [k: string]: unknown;
    }[];
  };
}

export interface MappedRoute {
  /** Parent service name (the route's namespace) → its subsets and the traffic-split config. */
  parents: { service: string; subsets: SubsetConfig[]; split: { subsets: { name: string; weight: number }[] } }[];
  problems: string[];
}

const isService = (r: { group?: string; kind?: string }) => (r.group ?? '') === '' && (r.kind ?? 'Service') === 'Service';

export function mapHttpRoute(route: HttpRoute, services: (name: string) => V1Service | undefined): MappedRoute {
  const ns = route.metadata.namespace;
  const problems: string[] = [];
  const parents = (route.spec?.parentRefs ?? []).filter((p) => {
    if (!isService(p)) return false; // a Gateway parent: not the mesh's business
    if ((p.namespace ?? ns) !== ns) {
      problems.push(`parentRef ${p.namespace}/${p.name}: a Service parent in another namespace is not supported`);
      return false;
    }
    return true;
  });
  if (parents.length === 0) return { parents: [], problems };
  const rules = route.spec?.rules ?? [];
  if (rules.length !== 1) {
    problems.push(`${rules.length} rules: only one rule (weighted backendRefs, no matches) is supported; the route is not applied`);
    return { parents: [], problems };
  }
  const rule = rules[0]!;
  const catchAll = (rule.matches ?? []).every((m) => !m.headers && !m.queryParams && !m.method
    && (!m.path || ((m.path.type ?? 'PathPrefix') === 'PathPrefix' && (m.path.value ?? '/') === '/')));
  if (!catchAll) problems.push('rules[0].matches: only a catch-all match (PathPrefix /) is supported; the route is not applied');
  if ((rule.filters?.length ?? 0) > 0) problems.push('rules[0].filters: not supported; the route is not applied');
  for (const k of Object.keys(rule)) if (!['matches', 'filters', 'backendRefs', 'name', 'timeouts', 'retry', 'sessionPersistence'].includes(k)) problems.push(`rules[0].${k}: not supported`);
  if (rule.timeouts !== undefined) problems.push('rules[0].timeouts: not supported (set requestTimeoutMs on the service); ignored');
  const backends = rule.backendRefs ?? [];
  if (backends.length === 0) problems.push('rules[0].backendRefs: none; the route is not applied');
  if (!catchAll || (rule.filters?.length ?? 0) > 0 || backends.length === 0) return { parents: [], problems };
  const out: MappedRoute['parents'] = [];
  for (const parent of parents) {
    const parentSvc = services(parent.name);
    if (!parentSvc?.spec?.selector) {
      problems.push(`parentRef ${parent.name}: no such Service with a selector in ${ns}; the route is not applied to it`);
      continue;
    }
    const subsets: SubsetConfig[] = [];
    const split: { name: string; weight: number }[] = [];
    let ok = true;
    backends.forEach((b, i) => {
      if (!isService(b) || (b.namespace ?? ns) !== ns) {
        problems.push(`rules[0].backendRefs[${i}] ${b.name}: only Services in ${ns} are supported`);
        ok = false;
        return;
      }
      if ((b.filters?.length ?? 0) > 0) problems.push(`rules[0].backendRefs[${i}].filters: not supported; ignored`);
      const svc = services(b.name);
      const selector = svc?.spec?.selector;
      const narrows = selector && Object.entries(parentSvc.spec!.selector!).every(([k, v]) => selector[k] === v);
      if (!selector || !narrows) {
        problems.push(`rules[0].backendRefs[${i}] ${b.name}: ${selector ? `its selector does not narrow ${parent.name}'s` : 'no such Service with a selector'}; the route is not applied to ${parent.name}`);
        ok = false;
        return;
      }
      subsets.push({ name: b.name, labels: { ...selector } });
      split.push({ name: b.name, weight: b.weight ?? 1 });
    });
    if (!ok) continue;
    if (split.every((s) => s.weight === 0)) {
      problems.push(`every backendRef of ${parent.name} has weight 0; the route is not applied`);
      continue;
    }
    out.push({ service: parent.name, subsets, split: { subsets: split } });
  }
  return { parents: out, problems };
}
