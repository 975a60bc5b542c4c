/** The traffic-split filter in the harness: weights, stickiness, cookies. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadFilter, type TestFilter } from '@ambit/filter-sdk/testing';
import { buildIfStale } from '../../../runtime/test/fixtures.js';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CANARY = { subsets: [{ name: 'stable', weight: 95 }, { name: 'canary', weight: 5 }] };

beforeAll(async () => { await buildIfStale(PKG); });

function subsetOf(f: TestFilter, ...args: Parameters<TestFilter['request']>): string | undefined {
  const r = f.request(...args);
  if (r.action !== 'continue') throw new Error(`expected continue, got ${r.action}`);
  expect(r.ops).toEqual([]); // nothing leaks upstream
  return r.directives.subset;
}

describe('traffic-split filter: weighted choice', () => {
  const cases: Array<[string, number, string]> = [
    ['a draw in the first 95% goes to stable', 0.94, 'stable'],
    ['a draw at 95% goes to canary', 0.95, 'canary'],
    ['the top draw goes to canary', 0.9999, 'canary'],
    ['zero goes to stable', 0, 'stable'],
  ];
  for (const [name, draw, want] of cases) {
    it(name, async () => {
      const f = await loadFilter(PKG, { config: CANARY, random: () => draw });
      expect(subsetOf(f, {})).toBe(want);
      expect(f.counters.get(`routed_${want}`)).toBe(1);
    });
  }

  it('a subset with weight 0 gets nothing', async () => {
    const f = await loadFilter(PKG, { config: { subsets: [{ name: 'a', weight: 0 }, { name: 'b', weight: 1 }] } });
    for (let i = 0; i < 50; i++) expect(subsetOf(f, {})).toBe('b');
  });

  it('splits about 95/5 with the real generator', async () => {
    const f = await loadFilter(PKG, { config: CANARY });
    let canary = 0;
    for (let i = 0; i < 4000; i++) if (subsetOf(f, {}) === 'canary') canary++;
    // 5% of 4000 = 200, sd ≈ 14: ±80 is over 5 sd.
    expect(canary).toBeGreaterThan(120);
    expect(canary).toBeLessThan(280);
  });
});

describe('traffic-split filter: sticky sessions', () => {
  it('by header: the same value always lands on the same subset', async () => {
    const f = await loadFilter(PKG, { config: { subsets: [{ name: 'a', weight: 50 }, { name: 'b', weight: 50 }], sticky: { header: 'x-user' } } });
    const seen = new Map<string, Set<string>>();
    for (let round = 0; round < 3; round++) {
      for (let u = 0; u < 40; u++) {
        const user = `user-${u}`;
        const s = subsetOf(f, { headers: { 'x-user': user } })!;
        if (!seen.has(user)) seen.set(user, new Set());
        seen.get(user)!.add(s);
      }
    }
    expect([...seen.values()].every((s) => s.size === 1)).toBe(true);
    // 40 users over 50/50: both subsets get some.
    const subsets = new Set([...seen.values()].map((s) => [...s][0]));
    expect(subsets).toEqual(new Set(['a', 'b']));
  });

  it('by cookie: a request without one gets a cookie that keeps its next requests on its subset', async () => {
    const f = await loadFilter(PKG, { config: { subsets: [{ name: 'a', weight: 50 }, { name: 'b', weight: 50 }], sticky: { cookie: { name: 'ambit-split', ttlSeconds: 3600 } } } });
    for (let i = 0; i < 20; i++) {
      const requestId = `req-${i}`;
      const first = subsetOf(f, {}, { requestId });
      const res = f.response({ status: 200 }, {}, { requestId });
      if (res.action !== 'continue') throw new Error('expected continue');
      const cookie = res.response.headers.find(([k]) => k === 'set-cookie')?.[1];
      expect(cookie).toBe(`ambit-split=${requestId}; Path=/; HttpOnly; Max-Age=3600`);
      const value = cookie!.split(';')[0]!;
      for (let j = 0; j < 3; j++) expect(subsetOf(f, { headers: { cookie: `theme=dark; ${value}` } }, { requestId: `other-${i}-${j}` })).toBe(first);
      // A request that has the cookie gets no new one.
      const again = f.response({ status: 200 }, { headers: { cookie: value } }, {});
      expect(again).toMatchObject({ action: 'continue', ops: [] });
    }
  });

  it('refuses weights adding up to 0 and duplicate subsets', async () => {
    await expect(loadFilter(PKG, { config: { subsets: [{ name: 'a', weight: 0 }] } })).rejects.toMatchObject({ code: 'AMBIT_ERR_CONFIG_REJECTED' });
    await expect(loadFilter(PKG, { config: { subsets: [{ name: 'a', weight: 1 }, { name: 'a', weight: 1 }] } })).rejects.toMatchObject({ code: 'AMBIT_ERR_CONFIG_REJECTED' });
  });
});

describe('traffic-split filter: routes (Gateway API HTTPRoute rules)', () => {
  const ROUTES = {
    routes: [
      { name: 'exact', matches: [{ path: { type: 'Exact', value: '/api/login' } }], subsets: [{ name: 'auth', weight: 1 }] },
      { name: 'beta', matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-beta', value: 'yes' }] }], subsets: [{ name: 'canary', weight: 1 }] },
      { name: 'api', matches: [{ path: { type: 'PathPrefix', value: '/api/' } }, { method: 'DELETE', queryParams: [{ name: 'force', value: '1' }] }], subsets: [{ name: 'stable', weight: 3 }, { name: 'canary', weight: 1 }] },
      { name: 'drained', matches: [{ path: { type: 'Exact', value: '/old' } }], subsets: [{ name: 'stable', weight: 0 }] },
    ],
  };

  it('the first route with a match the request meets decides', async () => {
    const f = await loadFilter(PKG, { config: ROUTES, random: () => 0 });
    expect(subsetOf(f, { path: '/api/login' })).toBe('auth');
    expect(subsetOf(f, { path: '/api/login?next=/' })).toBe('auth');
    expect(subsetOf(f, { path: '/api/items', headers: { 'X-Beta': 'yes' } })).toBe('canary');
    expect(subsetOf(f, { path: '/api/items', headers: { 'x-beta': 'no' } })).toBe('stable');
    expect(subsetOf(f, { path: '/api' })).toBe('stable');
    expect(subsetOf(f, { method: 'DELETE', path: '/things?a=b&force=1' })).toBe('stable');
  });

  it('PathPrefix matches whole path elements; weights apply within the route', async () => {
    const top = await loadFilter(PKG, { config: ROUTES, random: () => 0.9 });
    expect(subsetOf(top, { path: '/api/items' })).toBe('canary');
    const r = top.request({ path: '/apiary' });
    expect(r.action === 'respond' && r.response.status).toBe(404);
    expect(r.action === 'respond' && r.response.body).toBe('no route matches GET /apiary\n');
    expect(top.counters.get('no_route')).toBe(1);
  });

  it('a request no route takes goes by the top-level subsets when there are some', async () => {
    const f = await loadFilter(PKG, { config: { ...ROUTES, subsets: [{ name: 'stable', weight: 1 }] }, random: () => 0 });
    expect(subsetOf(f, { path: '/elsewhere' })).toBe('stable');
  });

  it('a route whose weights are all 0 answers 500', async () => {
    const f = await loadFilter(PKG, { config: ROUTES });
    const r = f.request({ path: '/old' });
    expect(r.action === 'respond' && r.response.status).toBe(500);
  });

  it('refuses a config with neither subsets nor routes', async () => {
    await expect(loadFilter(PKG, { config: { sticky: { header: 'x' } } })).rejects.toThrow(/give subsets, routes or both/);
  });
});
