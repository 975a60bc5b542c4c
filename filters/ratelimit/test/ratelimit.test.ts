/** The ratelimit filter in the harness: buckets, keys, headers, and one table shared by several instances. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadFilter, SharedTable, type ContextInput, type RequestInput } from '@ambit/filter-sdk/testing';
import { buildIfStale } from '../../../runtime/test/fixtures.js';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MINUTE = { tokensPerFill: 1, fillIntervalMs: 60_000 };

beforeAll(async () => { await buildIfStale(PKG); });

describe('ratelimit filter: token buckets by key', () => {
  const cases: Array<{ name: string; config: Record<string, unknown>; requests: Array<[RequestInput, ContextInput?]>; statuses: Array<'ok' | 429> }> = [
    { name: 'global: a burst of maxTokens, then 429', config: { maxTokens: 2, ...MINUTE }, requests: [[{}], [{}], [{}]], statuses: ['ok', 'ok', 429] },
    {
      name: 'source: one bucket per identity (address without one)',
      config: { maxTokens: 1, ...MINUTE, key: { by: 'source' } },
      requests: [[{}, { source: { identity: 'spiffe://td/ns/a/sa/x' } }], [{}, { source: { identity: 'spiffe://td/ns/a/sa/y' } }], [{}, { source: { identity: 'spiffe://td/ns/a/sa/x' } }], [{}, { source: { address: '10.0.0.9' } }]],
      statuses: ['ok', 'ok', 429, 'ok'],
    },
    {
      name: 'header: per value; requests without the header are not limited',
      config: { maxTokens: 1, ...MINUTE, key: { by: 'header', header: 'x-api-key' } },
      requests: [[{ headers: { 'x-api-key': 'k1' } }], [{ headers: { 'x-api-key': 'k1' } }], [{ headers: { 'x-api-key': 'k2' } }], [{}], [{}]],
      statuses: ['ok', 429, 'ok', 'ok', 'ok'],
    },
    {
      name: 'path: per path, query ignored',
      config: { maxTokens: 1, ...MINUTE, key: { by: 'path' } },
      requests: [[{ path: '/a?x=1' }], [{ path: '/a?x=2' }], [{ path: '/b' }]],
      statuses: ['ok', 429, 'ok'],
    },
    {
      name: 'overrides: a key value with its own bucket',
      config: { maxTokens: 1, ...MINUTE, key: { by: 'header', header: 'x-tenant' }, overrides: [{ value: 'gold', maxTokens: 3, ...MINUTE }] },
      requests: [[{ headers: { 'x-tenant': 'gold' } }], [{ headers: { 'x-tenant': 'gold' } }], [{ headers: { 'x-tenant': 'gold' } }], [{ headers: { 'x-tenant': 'free' } }], [{ headers: { 'x-tenant': 'free' } }]],
      statuses: ['ok', 'ok', 'ok', 'ok', 429],
    },
    {
      name: 'a long key is hashed, still one bucket per value',
      config: { maxTokens: 1, ...MINUTE, key: { by: 'path' } },
      requests: [[{ path: `/${'a'.repeat(300)}` }], [{ path: `/${'a'.repeat(300)}` }], [{ path: `/${'a'.repeat(299)}b` }]],
      statuses: ['ok', 429, 'ok'],
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const f = await loadFilter(PKG, { config: c.config });
      const got = c.requests.map(([r, ctx]) => { const out = f.request(r, ctx); return out.action === 'continue' ? 'ok' : out.response.status; });
      expect(got).toEqual(c.statuses);
    });
  }

  it('answers 429 with retry-after and x-ratelimit-* headers, and counts', async () => {
    const f = await loadFilter(PKG, { config: { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 30_000 } });
    f.request({});
    const r = f.request({});
    if (r.action !== 'respond') throw new Error('expected a 429');
    expect(r.response.status).toBe(429);
    const h = Object.fromEntries(r.response.headers);
    expect(h['x-ratelimit-limit']).toBe('1');
    expect(h['x-ratelimit-remaining']).toBe('0');
    expect(Number(h['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(h['retry-after'])).toBeLessThanOrEqual(30);
    expect(h['x-ratelimit-reset']).toBe(h['retry-after']);
    expect(f.counters.get('allowed')).toBe(1);
    expect(f.counters.get('limited')).toBe(1);
  });

  it('refills tokensPerFill every fillIntervalMs', async () => {
    const f = await loadFilter(PKG, { config: { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 200 } });
    expect(f.request({}).action).toBe('continue');
    expect(f.request({}).action).toBe('respond');
    await new Promise((r) => setTimeout(r, 250));
    expect(f.request({}).action).toBe('continue');
  });

  it('rateLimitHeaders: all puts the headers on allowed responses too', async () => {
    const f = await loadFilter(PKG, { config: { maxTokens: 5, ...MINUTE, rateLimitHeaders: 'all' } });
    f.request({});
    const r = f.response({ status: 200 }, {});
    if (r.action !== 'continue') throw new Error('expected continue');
    expect(Object.fromEntries(r.response.headers)).toMatchObject({ 'x-ratelimit-limit': '5', 'x-ratelimit-remaining': '4' });
  });

  it('instances sharing one table share the buckets (as the proxy\'s filter threads do)', async () => {
    const shared = SharedTable.create();
    const config = { maxTokens: 10, ...MINUTE };
    const a = await loadFilter(PKG, { config, shared });
    const b = await loadFilter(PKG, { config, shared });
    let ok = 0;
    for (let i = 0; i < 30; i++) if ((i % 2 ? a : b).request({}).action === 'continue') ok++;
    expect(ok).toBe(10);
  });

  it('a fill time a moment ahead of this thread\'s clock (written by another thread) neither refills nor resets', async () => {
    const f = await loadFilter(PKG, { config: { maxTokens: 5, ...MINUTE } });
    // The global bucket's storage key is "b:"; empty, last filled 2 s "from now".
    expect(f.shared.set('b:', `~${Date.now() + 62_000}:0:${Date.now() + 2_000}`, 0)).toBe(true);
    expect(f.request({})).toMatchObject({ action: 'respond', response: { status: 429 } });
  });

  it('10,000 requests to distinct paths do not refill a drained bucket; new keys past the table fail closed and are counted', async () => {
    const f = await loadFilter(PKG, { config: { maxTokens: 3, ...MINUTE, key: { by: 'path' } } });
    const status = (p: string) => { const out = f.request({ path: p }); return out.action === 'continue' ? 'ok' : out.response.status; };
    expect(['/login', '/login', '/login', '/login'].map(status)).toEqual(['ok', 'ok', 'ok', 429]);
    const flood = Array.from({ length: 10_000 }, (_, i) => status(`/p/${i}`));
    expect(status('/login')).toBe(429);
    // The table holds 4096 keys by default: the rest are limited, not let in by evicting anyone.
    expect(flood.filter((s) => s === 'ok').length).toBeLessThanOrEqual(4096);
    expect(flood.filter((s) => s === 'ok').length).toBeGreaterThan(1000);
    expect(f.counters.get('table_full')).toBe(flood.filter((s) => s === 429).length);
    expect(flood.slice(-100)).toEqual(Array(100).fill(429));
  });

  it('a bucket that is full again gives its slot to a new key', async () => {
    const f = await loadFilter(PKG, { config: { maxTokens: 2, tokensPerFill: 2, fillIntervalMs: 300, key: { by: 'path' } }, shared: SharedTable.create(16) });
    const status = (p: string) => { const out = f.request({ path: p }); return out.action === 'continue' ? 'ok' : out.response.status; };
    expect(Array.from({ length: 16 }, (_, i) => status(`/k/${i}`))).toEqual(Array(16).fill('ok'));
    expect(status('/new')).toBe(429);
    expect(f.counters.get('table_full')).toBe(1);
    // One fill later every bucket is full again: each may go.
    await new Promise((r) => setTimeout(r, 350));
    expect(status('/new')).toBe('ok');
  });

  it('refuses key by header without a header name', async () => {
    await expect(loadFilter(PKG, { config: { maxTokens: 1, ...MINUTE, key: { by: 'header' } } })).rejects.toMatchObject({ code: 'AMBIT_ERR_CONFIG_REJECTED' });
  });
});
