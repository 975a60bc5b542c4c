// Istio AuthorizationPolicy → authz filter policies, GAMMA HTTPRoute → traffic-split, and the
// FilterBinding CRD generated from its TypeBox schema.
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import type { V1Service } from '@kubernetes/client-node';
import { composeRoutes, crds, mapAuthorizationPolicy, mapHttpRoute } from '@ambit/controller';
import { REPO } from './support/cluster.js';

const ap = (spec: object) => ({ metadata: { name: 'p', namespace: 'shop' }, spec });

describe('AuthorizationPolicy mapping', () => {
  it('maps supported fields one to one', () => {
    const m = mapAuthorizationPolicy(ap({
      action: 'DENY',
      rules: [{
        from: [{ source: { principals: ['cluster.local/ns/a/sa/b'], notNamespaces: ['x'], ipBlocks: ['10.0.0.0/8'] } }],
        to: [{ operation: { methods: ['POST'], paths: ['/admin/*'], ports: ['8080'], hosts: ['a.example'] } }],
        when: [{ key: 'request.headers[x-tenant]', values: ['gold'] }, { key: 'source.ip', notValues: ['10.1.0.0/16'] }],
      }],
    }));
    expect(m.unsupported).toEqual([]);
    expect(m.policy).toEqual({
      name: 'shop.p', action: 'DENY',
      rules: [{
        from: [{ source: { principals: ['cluster.local/ns/a/sa/b'], notNamespaces: ['x'], ipBlocks: ['10.0.0.0/8'] } }],
        to: [{ operation: { methods: ['POST'], paths: ['/admin/*'], ports: ['8080'], hosts: ['a.example'] } }],
        when: [{ key: 'request.headers[x-tenant]', values: ['gold'] }, { key: 'source.ip', notValues: ['10.1.0.0/16'] }],
      }],
    });
  });

  it('an ALLOW rule with an unsupported field is left out (it can never allow), and said so', () => {
    const m = mapAuthorizationPolicy(ap({
      rules: [
        { from: [{ source: { requestPrincipals: ['iss/sub'] } }] },
        { to: [{ operation: { paths: ['/ok'] } }] },
        { when: [{ key: 'request.auth.claims[group]', values: ['admin'] }] },
      ],
    }));
    expect(m.policy).toEqual({ name: 'shop.p', action: 'ALLOW', rules: [{ to: [{ operation: { paths: ['/ok'] } }] }] });
    expect(m.unsupported).toEqual([
      'rules[0].from[0].source.requestPrincipals: not supported; rules[0] is left out of the ALLOW policy (it allows nothing)',
      'rules[2].when[0] key request.auth.claims[group]: not supported; rules[2] is left out of the ALLOW policy (it allows nothing)',
    ]);
  });

  it('a DENY rule keeps its other conditions (it denies more); CUSTOM becomes DENY; targetRefs are not applied', () => {
    const deny = mapAuthorizationPolicy(ap({ action: 'DENY', rules: [{ from: [{ source: { remoteIpBlocks: ['1.2.3.4'], namespaces: ['jobs'] } }] }] }));
    expect(deny.policy!.rules).toEqual([{ from: [{ source: { namespaces: ['jobs'] } }] }]);
    expect(deny.unsupported[0]).toMatch(/remoteIpBlocks: not supported; left out of the DENY rule, which therefore denies more/);
    const custom = mapAuthorizationPolicy(ap({ action: 'CUSTOM', provider: { name: 'ext' }, rules: [{ to: [{ operation: { paths: ['/x'] } }] }] }));
    expect(custom.policy!.action).toBe('DENY');
    expect(custom.unsupported[0]).toMatch(/CUSTOM/);
    const targeted = mapAuthorizationPolicy(ap({ targetRefs: [{ kind: 'Service', name: 's' }], rules: [{}] }));
    expect(targeted.policy).toBeUndefined();
    expect(targeted.unsupported[0]).toMatch(/targetRef/);
    // Istio: ALLOW without rules allows nothing; an empty rule matches everything.
    expect(mapAuthorizationPolicy(ap({})).policy!.rules).toEqual([]);
    expect(mapAuthorizationPolicy(ap({ rules: [{}] })).policy!.rules).toEqual([{}]);
  });
});

describe('HTTPRoute mapping', () => {
  const svc = (name: string, selector: Record<string, string>): V1Service => ({ metadata: { name, namespace: 'shop' }, spec: { selector, ports: [{ port: 80 }] } });
  const services = new Map([['reviews', svc('reviews', { app: 'reviews' })], ['reviews-v1', svc('reviews-v1', { app: 'reviews', version: 'v1' })], ['reviews-v2', svc('reviews-v2', { app: 'reviews', version: 'v2' })], ['other', svc('other', { app: 'other' })]]);
  const route = (spec: object) => ({ metadata: { name: 'r', namespace: 'shop' }, spec });

  it('weighted backendRefs become subsets of the parent Service and a traffic split', () => {
    const m = mapHttpRoute(route({
      parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 80 }],
      rules: [{ backendRefs: [{ name: 'reviews-v1', port: 80, weight: 90 }, { name: 'reviews-v2', port: 80, weight: 10 }] }],
    }), (n) => services.get(n));
    expect(m.problems).toEqual([]);
    expect(m.parents).toEqual([{
      service: 'reviews',
      subsets: [{ name: 'reviews-v1', labels: { app: 'reviews', version: 'v1' } }, { name: 'reviews-v2', labels: { app: 'reviews', version: 'v2' } }],
      entries: [{ name: 'shop/r/rules[0]', match: { path: { type: 'PathPrefix', value: '/' } }, subsets: [{ name: 'reviews-v1', weight: 90 }, { name: 'reviews-v2', weight: 10 }], rule: 0, index: 0 }],
    }]);
  });

  it('rules with path, method, header and query matches become routes in the Gateway API\'s precedence order', () => {
    const older = { metadata: { name: 'b', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: {
      parentRefs: [{ kind: 'Service', name: 'reviews' }],
      rules: [
        { backendRefs: [{ name: 'reviews-v1' }] },
        { matches: [{ path: { type: 'PathPrefix', value: '/api' } }, { path: { value: '/api' }, headers: [{ name: 'X-Canary', value: 'yes' }] }], backendRefs: [{ name: 'reviews-v2', weight: 3 }, { name: 'reviews-v1', weight: 1 }] },
      ],
    } };
    const newer = { metadata: { name: 'a', namespace: 'shop', creationTimestamp: '2026-02-01T00:00:00Z' }, spec: {
      parentRefs: [{ kind: 'Service', name: 'reviews' }],
      rules: [
        { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: 'reviews-v2' }] },
        { matches: [{ path: { type: 'Exact', value: '/' }, method: 'POST', queryParams: [{ name: 'q', value: '1' }] }], backendRefs: [{ name: 'reviews-v1' }] },
      ],
    } };
    const [mb, ma] = [mapHttpRoute(older, (n) => services.get(n)), mapHttpRoute(newer, (n) => services.get(n))];
    expect([mb.problems, ma.problems]).toEqual([[], []]);
    const composed = composeRoutes([{ route: newer, entries: ma.parents[0]!.entries }, { route: older, entries: mb.parents[0]!.entries }]);
    expect(composed.routes.map((r) => [r.name, JSON.stringify(r.matches[0])])).toEqual([
      ['shop/a/rules[1]', JSON.stringify({ path: { type: 'Exact', value: '/' }, method: 'POST', queryParams: [{ name: 'q', value: '1' }] })],
      // Equal prefixes: more headers first; then the older route before the newer.
      ['shop/b/rules[1]', JSON.stringify({ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-canary', value: 'yes' }] })],
      ['shop/b/rules[1]', JSON.stringify({ path: { type: 'PathPrefix', value: '/api' } })],
      ['shop/a/rules[0]', JSON.stringify({ path: { type: 'PathPrefix', value: '/api' } })],
      ['shop/b/rules[0]', JSON.stringify({ path: { type: 'PathPrefix', value: '/' } })],
    ]);
    expect(composed.routes[1]!.subsets).toEqual([{ name: 'reviews-v2', weight: 3 }, { name: 'reviews-v1', weight: 1 }]);
  });

  it('reports what it cannot map and does not apply the route', () => {
    const m = mapHttpRoute(route({
      parentRefs: [{ kind: 'Service', name: 'reviews' }],
      rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/a.*' }, headers: [{ type: 'RegularExpression', name: 'x', value: 'y.*' }] }], backendRefs: [{ name: 'reviews-v1' }] }],
    }), (n) => services.get(n));
    expect(m.parents).toEqual([]);
    expect(m.problems).toEqual([
      'rules[0].matches[0].path.type RegularExpression: not supported (Exact and PathPrefix are); the route is not applied',
      'rules[0].matches[0].headers[0].type RegularExpression: not supported (Exact is); the route is not applied',
    ]);
    const filtered = mapHttpRoute(route({ parentRefs: [{ kind: 'Service', name: 'reviews' }], rules: [{ filters: [{ type: 'RequestHeaderModifier' }], backendRefs: [{ name: 'reviews-v1' }] }] }), (n) => services.get(n));
    expect(filtered.parents).toEqual([]);
    expect(filtered.problems).toEqual(['rules[0].filters: not supported; the route is not applied']);
    const elsewhere = new Map([...services, ['reviews-v3', { metadata: { name: 'reviews-v3', namespace: 'shop' }, spec: { selector: { app: 'reviews', version: 'v3' }, ports: [{ port: 80, targetPort: 9000 }] } } as V1Service]]);
    const port = mapHttpRoute(route({ parentRefs: [{ kind: 'Service', name: 'reviews' }], rules: [{ backendRefs: [{ name: 'reviews-v3', port: 80 }] }] }), (n) => elsewhere.get(n));
    expect(port.parents).toEqual([]);
    expect(port.problems).toEqual(['rules[0].backendRefs[0] reviews-v3: port 80 reaches its pods at target port 9000, but reviews port 80 at 80; a backend on another target port than the parent\'s is not supported; the route is not applied to reviews']);
    const outside = mapHttpRoute(route({ parentRefs: [{ kind: 'Service', name: 'reviews' }], rules: [{ backendRefs: [{ name: 'other' }] }] }), (n) => services.get(n));
    expect(outside.parents).toEqual([]);
    expect(outside.problems.join('\n')).toMatch(/other: its selector does not narrow reviews's/);
    // Reported and ignored: the route applies.
    const timed = mapHttpRoute(route({ parentRefs: [{ kind: 'Service', name: 'reviews' }], rules: [{ timeouts: { request: '1s' }, backendRefs: [{ name: 'reviews-v1' }] }] }), (n) => services.get(n));
    expect(timed.parents.length).toBe(1);
    expect(timed.problems).toEqual(['rules[0].timeouts: not supported (set requestTimeoutMs on the service); ignored']);
    // A Gateway parent is not the mesh's business: nothing to do, nothing to report.
    expect(mapHttpRoute(route({ parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }], rules: [] }), () => undefined)).toEqual({ parents: [], problems: [] });
  });
});

describe('FilterBinding CRD', () => {
  it('the committed CRD is the one generated from the TypeBox schema, and it is structural', async () => {
    const committed = await readFile(path.join(REPO, 'controller/crds/filterbindings.ambit.dev.yaml'), 'utf8');
    expect(committed).toBe(crds().map((c) => stringify(c, { lineWidth: 0 })).join('---\n'));
    const text = JSON.stringify(crds()[0]);
    expect(text).not.toMatch(/"additionalProperties":false/);
    const spec = (crds()[0] as { spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: { properties: { filters: { items: { properties: { config: object } } } } } } } } }[] } }).spec.versions[0]!.schema.openAPIV3Schema.properties.spec.properties.filters.items.properties.config;
    expect(spec).toMatchObject({ type: 'object', 'x-kubernetes-preserve-unknown-fields': true });
  });
});
