/**
 * Gateway API HTTPRoute with a Service parentRef (GAMMA, mesh routing) → the traffic-split
 * filter on the parent Service, outbound.
 *
 * - Each backendRef becomes a subset of the parent: the backend Service's selector names the
 *   subset's pods (so `reviews-v1` selecting `app=reviews,version=v1` under `reviews`
 *   selecting `app=reviews`).
 * - Each rule's matches become routes of the filter (one per match, a rule without matches
 *   one catch-all), each with the rule's weighted subsets. `composeRoutes` orders the routes
 *   of every HTTPRoute on a parent by the Gateway API's precedence (Exact path, longest
 *   PathPrefix, method, most headers, most query parameters, then the oldest route, then
 *   `namespace/name`, then rule order), so the filter's first match is the spec's. A request
 *   no rule matches gets 404.
 * - Supported matches: path `Exact` / `PathPrefix`, `method`, `headers` and `queryParams` of
 *   type `Exact`. Anything else (a `RegularExpression` match, rule or backend `filters`, a
 *   backend that is not a Service narrowing the parent's selector, or whose port reaches the
 *   pods at another target port than the parent's) is reported (an Event and
 *   the route's status) and the route is not applied; `timeouts`, `retry` and
 *   `sessionPersistence` are reported and ignored.
 */
import type { V1Service } from '@kubernetes/client-node';
import type { SubsetConfig } from '@ambit/runtime';
import { targetPortOf } from './services.js';

type NameValue = { type?: string; name: string; value: string };

export interface HttpRoute {
  metadata: { name: string; namespace: string; uid?: string; generation?: number; creationTimestamp?: string | Date };
  spec?: {
    parentRefs?: { group?: string; kind?: string; name: string; namespace?: string; port?: number }[];
    rules?: {
      matches?: { path?: { type?: string; value?: string }; headers?: NameValue[]; queryParams?: NameValue[]; method?: string }[];
      filters?: unknown[];
      backendRefs?: { group?: string; kind?: string; name: string; namespace?: string; port?: number; weight?: number; filters?: unknown[] }[];
      [k: string]: unknown;
    }[];
  };
}

/** A match as the traffic-split filter takes it. */
export interface RouteMatch {
  path: { type: 'Exact' | 'PathPrefix'; value: string };
  method?: string;
  headers?: { name: string; value: string }[];
  queryParams?: { name: string; value: string }[];
}

export type Split = { name: string; weight: number }[];

/** One match of one rule, with the rule's split: a route of the filter once ordered. */
export interface RouteEntry {
  name: string;
  match: RouteMatch;
  subsets: Split;
  /** Where it comes from, for the precedence ties. */
  rule: number;
  index: number;
}

export interface MappedRoute {
  /** Parent service name (the route's namespace) → its subsets and the routes this HTTPRoute adds. */
  parents: { service: string; subsets: SubsetConfig[]; entries: RouteEntry[] }[];
  problems: string[];
}

const isService = (r: { group?: string; kind?: string }) => (r.group ?? '') === '' && (r.kind ?? 'Service') === 'Service';
const RULE_KEYS = ['matches', 'filters', 'backendRefs', 'name', 'timeouts', 'retry', 'sessionPersistence'];
const IGNORED = ['timeouts', 'retry', 'sessionPersistence'];

/** The rule's matches as the filter's, or the problems that keep the route from being applied. */
function mapMatches(rule: NonNullable<NonNullable<HttpRoute['spec']>['rules']>[number], at: string, problems: string[]): RouteMatch[] | undefined {
  const out: RouteMatch[] = [];
  let ok = true;
  const list = rule.matches && rule.matches.length > 0 ? rule.matches : [{}];
  list.forEach((m: NonNullable<typeof rule.matches>[number], j) => {
    const where = `${at}.matches[${j}]`;
    const type = m.path?.type ?? 'PathPrefix';
    if (type !== 'Exact' && type !== 'PathPrefix') {
      problems.push(`${where}.path.type ${type}: not supported (Exact and PathPrefix are); the route is not applied`);
      ok = false;
    }
    const exact = (kind: 'headers' | 'queryParams') => (m[kind] ?? []).flatMap((h, k) => {
      if ((h.type ?? 'Exact') !== 'Exact') {
        problems.push(`${where}.${kind}[${k}].type ${h.type}: not supported (Exact is); the route is not applied`);
        ok = false;
        return [];
      }
      return [{ name: kind === 'headers' ? h.name.toLowerCase() : h.name, value: h.value }];
    });
    const headers = exact('headers');
    const queryParams = exact('queryParams');
    out.push({
      path: { type: type === 'Exact' ? 'Exact' : 'PathPrefix', value: m.path?.value ?? '/' },
      ...(m.method ? { method: m.method } : {}),
      ...(headers.length > 0 ? { headers } : {}),
      ...(queryParams.length > 0 ? { queryParams } : {}),
    });
  });
  return ok ? out : undefined;
}

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
  if (rules.length === 0) {
    problems.push('no rules; the route is not applied');
    return { parents: [], problems };
  }
  let applicable = true;
  const matched = rules.map((rule, i) => {
    const at = `rules[${i}]`;
    for (const k of Object.keys(rule)) if (!RULE_KEYS.includes(k)) problems.push(`${at}.${k}: not supported; ignored`);
    for (const k of IGNORED) if (rule[k] !== undefined) problems.push(`${at}.${k}: not supported${k === 'timeouts' ? ' (set requestTimeoutMs on the service)' : ''}; ignored`);
    if ((rule.filters?.length ?? 0) > 0) {
      problems.push(`${at}.filters: not supported; the route is not applied`);
      applicable = false;
    }
    if ((rule.backendRefs ?? []).length === 0) {
      problems.push(`${at}.backendRefs: none; the route is not applied`);
      applicable = false;
    }
    const m = mapMatches(rule, at, problems);
    if (!m) applicable = false;
    return m ?? [];
  });
  if (!applicable) return { parents: [], problems };
  const out: MappedRoute['parents'] = [];
  for (const parent of parents) {
    const parentSvc = services(parent.name);
    if (!parentSvc?.spec?.selector) {
      problems.push(`parentRef ${parent.name}: no such Service with a selector in ${ns}; the route is not applied to it`);
      continue;
    }
    if (parent.port !== undefined && (parentSvc.spec.ports ?? []).length > 1) {
      problems.push(`parentRef ${parent.name} port ${parent.port}: the routes apply to every port of ${parent.name}, not this one alone; ignored`);
    }
    const subsets = new Map<string, SubsetConfig>();
    const entries: RouteEntry[] = [];
    let ok = true;
    rules.forEach((rule, i) => {
      const split: Split = [];
      (rule.backendRefs ?? []).forEach((b, k) => {
        const at = `rules[${i}].backendRefs[${k}] ${b.name}`;
        if (!isService(b) || (b.namespace ?? ns) !== ns) {
          problems.push(`${at}: only Services in ${ns} are supported; the route is not applied to ${parent.name}`);
          ok = false;
          return;
        }
        if ((b.filters?.length ?? 0) > 0) {
          problems.push(`rules[${i}].backendRefs[${k}].filters: not supported; the route is not applied to ${parent.name}`);
          ok = false;
          return;
        }
        const backend = services(b.name);
        const selector = backend?.spec?.selector;
        const narrows = selector && Object.entries(parentSvc.spec!.selector!).every(([key, v]) => selector[key] === v);
        if (!selector || !narrows) {
          problems.push(`${at}: ${selector ? `its selector does not narrow ${parent.name}'s` : 'no such Service with a selector'}; the route is not applied to ${parent.name}`);
          ok = false;
          return;
        }
        // The subset is the parent's endpoints at the parent's target port: a backend port
        // reaching its pods at another target port cannot be honoured.
        if (b.port !== undefined) {
          const bp = backend.spec?.ports?.find((x) => x.port === b.port);
          const parentPorts = (parentSvc.spec?.ports ?? []).filter((x) => parent.port === undefined || x.port === parent.port);
          const other = bp ? parentPorts.find((pp) => targetPortOf(pp) !== targetPortOf(bp)) : undefined;
          if (!bp || other) {
            problems.push(`${at}: ${bp ? `port ${b.port} reaches its pods at target port ${targetPortOf(bp)}, but ${parent.name} port ${other!.port} at ${targetPortOf(other!)}; a backend on another target port than the parent's is not supported` : `has no port ${b.port}`}; the route is not applied to ${parent.name}`);
            ok = false;
            return;
          }
        }
        subsets.set(b.name, { name: b.name, labels: { ...selector } });
        const same = split.find((s) => s.name === b.name);
        if (same) same.weight += b.weight ?? 1;
        else split.push({ name: b.name, weight: b.weight ?? 1 });
      });
      if (ok && split.every((s) => s.weight === 0)) problems.push(`rules[${i}]: every backendRef has weight 0; requests it matches get 500`);
      matched[i]!.forEach((match, j) => entries.push({ name: `${ns}/${route.metadata.name}/rules[${i}]`, match, subsets: split, rule: i, index: j }));
    });
    if (!ok) continue;
    out.push({ service: parent.name, subsets: [...subsets.values()], entries });
  }
  return { parents: out, problems };
}

/** Higher first: Gateway API's precedence between two matches (before the ties between routes and rules). */
function rank(m: RouteMatch): number[] {
  return [m.path.type === 'Exact' ? 1 : 0, m.path.value.length, m.method ? 1 : 0, m.headers?.length ?? 0, m.queryParams?.length ?? 0];
}

/**
 * The traffic-split config of a parent Service from every HTTPRoute attached to it, in the
 * Gateway API's precedence order: by match (Exact path, longest PathPrefix, method, most
 * headers, most query parameters), then the oldest route, then `namespace/name`, then rule
 * and match order.
 */
export function composeRoutes(routes: { route: HttpRoute; entries: RouteEntry[] }[]): { routes: { name: string; matches: RouteMatch[]; subsets: Split }[] } {
  const created = (r: HttpRoute) => {
    const t = r.metadata.creationTimestamp;
    return t === undefined ? Number.MAX_SAFE_INTEGER : new Date(t).getTime();
  };
  const all = routes.flatMap(({ route, entries }) => entries.map((e) => ({ e, created: created(route), key: `${route.metadata.namespace}/${route.metadata.name}` })));
  all.sort((a, b) => {
    const [ra, rb] = [rank(a.e.match), rank(b.e.match)];
    for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return rb[i]! - ra[i]!;
    if (a.created !== b.created) return a.created - b.created;
    if (a.key !== b.key) return a.key < b.key ? -1 : 1;
    return a.e.rule - b.e.rule || a.e.index - b.e.index;
  });
  return { routes: all.map(({ e }) => ({ name: e.name, matches: [e.match], subsets: e.subsets })) };
}
