/** The headers filter, built with the real SDK and run in the harness: table-driven. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { AmbitError } from '@ambit/filter-sdk/host';
import { loadFilter } from '@ambit/filter-sdk/testing';
import { buildIfStale } from '../../../runtime/test/fixtures.js';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

beforeAll(async () => { await buildIfStale(PKG); });

describe('headers filter: request rules', () => {
  const cases: Array<{ name: string; config: unknown; request?: { headers?: Record<string, string | string[]>; path?: string }; ctx?: Parameters<Awaited<ReturnType<typeof loadFilter>>['request']>[1]; expect: Array<[string, string]> }> = [
    { name: 'set replaces every value', config: { request: { set: { 'x-a': '1' } } }, request: { headers: { 'x-a': ['0', '9'] } }, expect: [['x-a', '1']] },
    { name: 'add appends', config: { request: { add: { 'x-a': '2' } } }, request: { headers: { 'x-a': '1' } }, expect: [['x-a', '1'], ['x-a', '2']] },
    { name: 'remove drops every value', config: { request: { remove: ['x-a'] } }, request: { headers: { 'x-a': ['1', '2'], 'x-b': '3' } }, expect: [['x-b', '3']] },
    { name: 'remove, then set, then add', config: { request: { remove: ['x-a'], set: { 'x-b': 's' }, add: { 'x-c': 'a' } } }, request: { headers: { 'x-a': '1', 'x-b': 'old' } }, expect: [['x-b', 's'], ['x-c', 'a']] },
    { name: 'source identity and request id', config: { request: { set: { 'x-src': '%SOURCE_IDENTITY%', 'x-id': 'req=%REQUEST_ID%' } } }, ctx: { source: { identity: WEB }, requestId: 'r-1' }, expect: [['x-src', WEB], ['x-id', 'req=r-1']] },
    { name: 'workload, namespace, service, attempt', config: { request: { set: { 'x-w': '%SOURCE_NAMESPACE%/%SOURCE_WORKLOAD% → %DESTINATION_SERVICE% #%ATTEMPT%' } } }, ctx: { source: { workload: 'web', namespace: 'shop' }, service: 'api.shop' }, expect: [['x-w', 'shop/web → api.shop #1']] },
    { name: 'a request header and a literal percent', config: { request: { set: { 'x-ua': '%REQ(User-Agent)% 100%%' } } }, request: { headers: { 'user-agent': 'curl/8' } }, expect: [['user-agent', 'curl/8'], ['x-ua', 'curl/8 100%']] },
    { name: 'an empty value (no identity) is not added', config: { request: { set: { 'x-src': '%SOURCE_IDENTITY%' } } }, expect: [] },
    { name: 'keepEmpty adds it anyway', config: { request: { set: { 'x-src': '%SOURCE_IDENTITY%' } }, keepEmpty: true }, expect: [['x-src', '']] },
    { name: 'method, path, authority', config: { request: { set: { 'x-r': '%METHOD% %AUTHORITY%%PATH%' } } }, request: { path: '/a?b=1' }, expect: [['x-r', 'GET example.test/a?b=1']] },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const f = await loadFilter(PKG, { config: c.config });
      const r = f.request(c.request ?? {}, c.ctx);
      if (r.action !== 'continue') throw new Error(`expected continue, got ${r.action}`);
      expect(r.request.headers).toEqual(c.expect);
    });
  }
});

describe('headers filter: response rules', () => {
  it('sets, adds and removes response headers with request facts', async () => {
    const f = await loadFilter(PKG, { config: { response: { set: { 'x-request-id': '%REQUEST_ID%' }, add: { 'x-served-for': '%SOURCE_WORKLOAD%' }, remove: ['server'] } } });
    const r = f.response({ status: 200, headers: { server: 'nginx', 'x-keep': '1' } }, { path: '/' }, { requestId: 'abc', source: { workload: 'web' } });
    expect(r).toMatchObject({ action: 'continue', response: { status: 200, headers: [['x-keep', '1'], ['x-request-id', 'abc'], ['x-served-for', 'web']] } });
  });

  it('has no capabilities and leaves a request alone when no request rules are set', async () => {
    const f = await loadFilter(PKG, { config: { response: { remove: ['server'] } } });
    expect(f.manifest?.capabilities).toEqual([]);
    expect(f.request({ headers: { a: '1' } })).toMatchObject({ action: 'continue', ops: [] });
  });
});

describe('headers filter: bad config', () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['an unknown variable', { request: { set: { 'x-a': '%NOPE%' } } }, /unknown variable %NOPE%/],
    ['%REQ% without a name', { request: { set: { 'x-a': '%REQ()%' } } }, /needs a header name/],
    ['changing host', { request: { set: { host: 'evil' } } }, /cannot be changed/],
    ['an invalid header name', { request: { set: { 'x a': '1' } } }, /not a valid header name/],
  ];
  for (const [name, config, message] of bad) {
    it(`refuses ${name}`, async () => {
      const e = await loadFilter(PKG, { config }).then(() => undefined, (err: unknown) => err);
      expect(e).toBeInstanceOf(AmbitError);
      expect((e as AmbitError).code).toBe('AMBIT_ERR_CONFIG_REJECTED');
      expect((e as AmbitError).message).toMatch(message);
    });
  }

  it('refuses an unknown property with the JSON path', async () => {
    const e = await loadFilter(PKG, { config: { requests: {} } }).then(() => undefined, (err: unknown) => err);
    expect((e as AmbitError).code).toBe('AMBIT_ERR_CONFIG_INVALID');
  });
});
