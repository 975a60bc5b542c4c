/** The authz filter in the harness: Istio AuthorizationPolicy semantics, table-driven. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { AmbitError } from '@ambit/filter-sdk/host';
import { loadFilter, type ConnectionInput, type RequestInput, type TestFilter } from '@ambit/filter-sdk/testing';
import { buildIfStale } from '../../../runtime/test/fixtures.js';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const id = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
const WEB = id('shop', 'web');
const BATCH = id('jobs', 'batch');
const ADMIN = id('ops', 'admin');

beforeAll(async () => { await buildIfStale(PKG); });

/** The verdict on a request from `identity` (and address), or on a connection. */
function http(f: TestFilter, identity: string | undefined, req: RequestInput, address = '10.1.2.3', port = 8080): string {
  const r = f.request(req, { source: { identity, address }, destination: { address: '10.9.0.1', port } });
  return r.action === 'continue' ? 'allow' : `${r.response.status} ${r.response.body.trim()}`;
}
function l4(f: TestFilter, identity: string | undefined, address = '10.1.2.3', port = 8080): string {
  const input: ConnectionInput = { source: { identity, address }, destination: { address: '10.9.0.1', port } };
  const r = f.connection(input);
  return r.action === 'allow' ? 'allow' : `deny ${r.reason}`;
}

describe('authz: a principal × path × method matrix', () => {
  const config = {
    policies: [
      { name: 'deny-admin-writes', action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/*'], notMethods: ['GET'] } }] }] },
      {
        name: 'shop-reads', action: 'ALLOW', rules: [
          { from: [{ source: { principals: ['cluster.local/ns/shop/sa/*'] } }], to: [{ operation: { methods: ['GET', 'HEAD'], paths: ['/products*', '/admin/*'] } }] },
        ],
      },
      { name: 'ops-all', action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['ops'] } }] }] },
    ],
  };
  const DENY_ADMIN = '403 RBAC: access denied by policy deny-admin-writes';
  const NO_ALLOW = '403 RBAC: access denied: no ALLOW policy matched (policies: shop-reads, ops-all)';
  const matrix: Array<[string | undefined, string, string, string]> = [
    [WEB, 'GET', '/products/1', 'allow'],
    [WEB, 'HEAD', '/products', 'allow'],
    [WEB, 'POST', '/products/1', NO_ALLOW],
    [WEB, 'GET', '/admin/users', 'allow'],
    [WEB, 'DELETE', '/admin/users', DENY_ADMIN],
    [WEB, 'GET', '/orders', NO_ALLOW],
    [BATCH, 'GET', '/products/1', NO_ALLOW],
    [ADMIN, 'POST', '/orders', 'allow'],
    [ADMIN, 'GET', '/admin/users', 'allow'],
    [ADMIN, 'POST', '/admin/users', DENY_ADMIN],
    [undefined, 'GET', '/products/1', NO_ALLOW],
    [WEB, 'GET', '/products/1?page=2', 'allow'],
  ];
  let f: TestFilter;
  beforeAll(async () => { f = await loadFilter(PKG, { config }); });
  for (const [who, method, p, want] of matrix) {
    it(`${who ?? 'no identity'} ${method} ${p} → ${want.split(' ')[0]}`, () => {
      expect(http(f, who, { method, path: p })).toBe(want);
    });
  }

  it('names the policy in a header too, and counts decisions', () => {
    const r = f.request({ method: 'DELETE', path: '/admin/x' }, { source: { identity: WEB } });
    expect(r).toMatchObject({ action: 'respond', response: { status: 403 } });
    if (r.action === 'respond') expect(r.response.headers).toContainEqual(['x-ambit-authz-policy', 'deny-admin-writes']);
    expect(f.counters.get('denied_deny-admin-writes')).toBeGreaterThan(0);
    expect(f.counters.get('allowed_shop-reads')).toBeGreaterThan(0);
  });

  it('has L7 ALLOW policies, so the connection phase lets every connection through to be decided per request', () => {
    expect(l4(f, undefined)).toBe('allow');
  });
});

describe('authz: matching rules', () => {
  const one = (rule: unknown, action = 'ALLOW') => ({ policies: [{ name: 'p', action, rules: [rule] }] });
  const cases: Array<{ name: string; rule: unknown; req?: RequestInput; identity?: string; address?: string; port?: number; want: boolean }> = [
    { name: 'principal exact, with or without spiffe://', rule: { from: [{ source: { principals: [WEB] } }] }, identity: WEB, want: true },
    { name: 'principal suffix', rule: { from: [{ source: { principals: ['*/sa/web'] } }] }, identity: WEB, want: true },
    { name: 'principal *: any authenticated', rule: { from: [{ source: { principals: ['*'] } }] }, identity: BATCH, want: true },
    { name: 'principal *: not plaintext', rule: { from: [{ source: { principals: ['*'] } }] }, want: false },
    { name: 'notPrincipals *: plaintext only', rule: { from: [{ source: { notPrincipals: ['*'] } }] }, want: true },
    { name: 'namespace from the identity', rule: { from: [{ source: { namespaces: ['jobs'] } }] }, identity: BATCH, want: true },
    { name: 'notNamespaces', rule: { from: [{ source: { notNamespaces: ['jobs'] } }] }, identity: BATCH, want: false },
    { name: 'ipBlocks CIDR', rule: { from: [{ source: { ipBlocks: ['10.1.0.0/16'] } }] }, address: '10.1.200.7', want: true },
    { name: 'ipBlocks miss', rule: { from: [{ source: { ipBlocks: ['10.2.0.0/16'] } }] }, address: '10.1.200.7', want: false },
    { name: 'ipBlocks single address', rule: { from: [{ source: { ipBlocks: ['10.1.2.3'] } }] }, want: true },
    { name: 'ipBlocks IPv6', rule: { from: [{ source: { ipBlocks: ['fd00:1::/32'] } }] }, address: 'fd00:1:0:0::9', want: true },
    { name: 'IPv4-mapped IPv6 source', rule: { from: [{ source: { ipBlocks: ['10.1.0.0/16'] } }] }, address: '::ffff:10.1.2.3', want: true },
    { name: 'notIpBlocks', rule: { from: [{ source: { notIpBlocks: ['10.0.0.0/8'] } }] }, want: false },
    { name: 'ports (strings, as Istio writes them)', rule: { to: [{ operation: { ports: ['8080'] } }] }, want: true },
    { name: 'notPorts', rule: { to: [{ operation: { notPorts: [8080] } }] }, want: false },
    { name: 'hosts, case-insensitive, port ignored', rule: { to: [{ operation: { hosts: ['API.shop*'] } }] }, req: { authority: 'api.shop.svc:8080' }, want: true },
    { name: 'notHosts', rule: { to: [{ operation: { notHosts: ['*.internal'] } }] }, req: { authority: 'db.internal' }, want: false },
    { name: 'path suffix', rule: { to: [{ operation: { paths: ['*.json'] } }] }, req: { path: '/a/b.json?x=1' }, want: true },
    { name: 'notPaths', rule: { to: [{ operation: { notPaths: ['/healthz'] } }] }, req: { path: '/healthz' }, want: false },
    { name: 'when header values', rule: { when: [{ key: 'request.headers[x-tenant]', values: ['gold', 'silver'] }] }, req: { headers: { 'x-tenant': 'gold' } }, want: true },
    { name: 'when header notValues', rule: { when: [{ key: 'request.headers[x-tenant]', notValues: ['free'] }] }, req: { headers: { 'x-tenant': 'free' } }, want: false },
    { name: 'when header absent does not match', rule: { when: [{ key: 'request.headers[x-tenant]', notValues: ['free'] }] }, want: false },
    { name: 'when source.ip', rule: { when: [{ key: 'source.ip', values: ['10.1.0.0/16'] }] }, want: true },
    { name: 'from, to and when must all match', rule: { from: [{ source: { principals: [WEB] } }], to: [{ operation: { methods: ['GET'] } }], when: [{ key: 'request.headers[x-a]', values: ['1'] }] }, identity: WEB, req: { headers: { 'x-a': '2' } }, want: false },
    { name: 'one of several from entries', rule: { from: [{ source: { principals: [ADMIN] } }, { source: { namespaces: ['shop'] } }] }, identity: WEB, want: true },
    { name: 'an empty rule matches everything', rule: {}, want: true },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const f = await loadFilter(PKG, { config: one(c.rule) });
      expect(http(f, c.identity, c.req ?? {}, c.address, c.port) === 'allow').toBe(c.want);
    });
  }

  it('an ALLOW policy without rules denies everything; no policies allow everything', async () => {
    const none = await loadFilter(PKG, { config: { policies: [{ name: 'nothing', action: 'ALLOW', rules: [] }] } });
    expect(http(none, ADMIN, {})).toMatch(/^403/);
    const empty = await loadFilter(PKG, { config: { policies: [] } });
    expect(http(empty, undefined, {})).toBe('allow');
  });

  it('AUDIT never decides; its matches are logged and counted', async () => {
    const f = await loadFilter(PKG, { config: { policies: [{ name: 'watch-admin', action: 'AUDIT', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] }] } });
    expect(http(f, WEB, { path: '/admin' })).toBe('allow');
    expect(f.counters.get('audit_watch-admin')).toBe(1);
    expect(f.logs.at(-1)?.message).toBe(`authz AUDIT policy watch-admin: GET example.test/admin from ${WEB}`);
  });

  it('DENY wins over a matching ALLOW', async () => {
    const f = await loadFilter(PKG, { config: { policies: [{ name: 'all', action: 'ALLOW', rules: [{}] }, { name: 'no-batch', action: 'DENY', rules: [{ from: [{ source: { principals: [BATCH] } }] }] }] } });
    expect(http(f, BATCH, {})).toBe('403 RBAC: access denied by policy no-batch');
    expect(http(f, WEB, {})).toBe('allow');
  });
});

describe('authz: L4 policies at the connection phase', () => {
  const config = {
    policies: [
      { name: 'no-jobs', action: 'DENY', rules: [{ from: [{ source: { namespaces: ['jobs'] } }] }] },
      { name: 'mesh-only', action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/*'] } }], to: [{ operation: { ports: [8080] } }] }, { from: [{ source: { ipBlocks: ['192.168.0.0/24'] } }] }] },
    ],
  };
  const cases: Array<[string, string | undefined, string, number, string]> = [
    ['a mesh principal on 8080', WEB, '10.1.2.3', 8080, 'allow'],
    ['a mesh principal on another port', WEB, '10.1.2.3', 9090, 'deny authz: connection to 10.9.0.1:9090 from spiffe://cluster.local/ns/shop/sa/web denied: no ALLOW policy matched (mesh-only)'],
    ['a denied namespace', BATCH, '10.1.2.3', 8080, 'deny authz: connection to 10.9.0.1:8080 from spiffe://cluster.local/ns/jobs/sa/batch denied by DENY policy no-jobs'],
    ['plaintext from an allowed block', undefined, '192.168.0.7', 5432, 'allow'],
    ['plaintext from elsewhere', undefined, '10.1.2.3', 8080, 'deny authz: connection to 10.9.0.1:8080 from 10.1.2.3 (no identity) denied: no ALLOW policy matched (mesh-only)'],
  ];
  let f: TestFilter;
  beforeAll(async () => { f = await loadFilter(PKG, { config }); });
  for (const [name, who, address, port, want] of cases) {
    it(name, () => { expect(l4(f, who, address, port)).toBe(want); });
  }

  it('implements both phases, with log and counters only', () => {
    expect(f.phases).toMatchObject({ connection: true, requestHeaders: true });
    expect(f.manifest?.capabilities).toEqual(['log', 'counters']);
  });

  it('an L4 DENY still applies at L4 when L7 ALLOW policies exist', async () => {
    const g = await loadFilter(PKG, { config: { policies: [config.policies[0], { name: 'reads', action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }] } });
    expect(l4(g, BATCH)).toMatch(/^deny .*no-jobs/);
    expect(l4(g, WEB)).toBe('allow');
    expect(http(g, WEB, { method: 'POST' })).toMatch(/^403/);
  });
});

describe('authz: bad config', () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['a bad CIDR', { policies: [{ name: 'p', rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] }] }] }, /invalid prefix length/],
    ['a bad address', { policies: [{ name: 'p', rules: [{ from: [{ source: { ipBlocks: ['not-an-ip'] } }] }] }] }, /not an IP address/],
    ['a bad port', { policies: [{ name: 'p', rules: [{ to: [{ operation: { ports: ['http'] } }] }] }] }, /not a port/],
    ['an unknown when key', { policies: [{ name: 'p', rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }] }] }, /unknown key/],
    ['a duplicate policy name', { policies: [{ name: 'p', rules: [] }, { name: 'p', rules: [] }] }, /defined twice/],
  ];
  for (const [name, config, message] of bad) {
    it(`refuses ${name}`, async () => {
      const e = await loadFilter(PKG, { config }).then(() => undefined, (err: unknown) => err);
      expect(e).toBeInstanceOf(AmbitError);
      expect((e as AmbitError).code).toBe('AMBIT_ERR_CONFIG_REJECTED');
      expect((e as AmbitError).message).toMatch(message);
    });
  }
});
