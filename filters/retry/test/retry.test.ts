/** The retry filter in the harness: conditions, methods, attempts, backoff, Retry-After, budget. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadFilter, type ContextInput, type RequestInput, type ResponseInput } from '@ambit/filter-sdk/testing';
import { buildIfStale } from '../../../runtime/test/fixtures.js';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NO_BUDGET = { budget: null };
/** The local answer the proxy gives the response phase when there is no upstream response. */
const local = (status: number, kind: string): ResponseInput => ({ status, headers: { 'x-ambit-upstream-error': kind } });

beforeAll(async () => { await buildIfStale(PKG); });

describe('retry filter: when it retries', () => {
  const cases: Array<{ name: string; config?: Record<string, unknown>; response: ResponseInput; request?: RequestInput; ctx?: ContextInput; retry: boolean; counter?: string }> = [
    { name: 'connect-failure (from the proxy)', response: local(503, 'connect-failure'), ctx: { upstreamError: 'connect-failure' }, retry: true, counter: 'retry_connect-failure' },
    { name: 'reset (from the proxy)', response: local(503, 'reset'), ctx: { upstreamError: 'reset' }, retry: true, counter: 'retry_reset' },
    { name: 'a forged x-ambit-upstream-error from an upstream 200 is ignored', response: { status: 200, headers: { 'x-ambit-upstream-error': 'reset' } }, retry: false },
    { name: 'reset not in retryOn', config: { retryOn: ['5xx'] }, response: { status: 200 }, ctx: { upstreamError: 'reset' }, retry: false },
    { name: 'gateway-error: 502', response: { status: 502 }, retry: true, counter: 'retry_gateway-error' },
    { name: 'gateway-error does not cover 500', response: { status: 500 }, retry: false },
    { name: '5xx covers 500', config: { retryOn: ['5xx'] }, response: { status: 500 }, retry: true, counter: 'retry_5xx' },
    { name: 'a timeout (504 from the proxy) under 5xx', config: { retryOn: ['5xx'] }, response: local(504, 'timeout'), ctx: { upstreamError: 'timeout' }, retry: true },
    { name: 'retriable-status-codes', config: { retryOn: ['retriable-status-codes'], retriableStatusCodes: [429] }, response: { status: 429 }, retry: true },
    { name: 'retriable-4xx: 409', config: { retryOn: ['retriable-4xx'] }, response: { status: 409 }, retry: true },
    { name: 'gRPC unavailable (trailers-only)', response: { status: 200, headers: { 'grpc-status': '14' } }, retry: true, counter: 'retry_unavailable' },
    { name: 'gRPC internal not in the default list', response: { status: 200, headers: { 'grpc-status': '13' } }, retry: false },
    { name: 'a 200 is never retried', response: { status: 200 }, retry: false },
    { name: 'POST is not retried on 503', response: { status: 503 }, request: { method: 'POST' }, retry: false, counter: 'skipped_non_idempotent' },
    { name: 'POST is retried after a connect failure', response: local(503, 'connect-failure'), request: { method: 'POST' }, ctx: { upstreamError: 'connect-failure' }, retry: true },
    { name: 'POST with retryNonIdempotent', config: { retryNonIdempotent: true }, response: { status: 503 }, request: { method: 'POST' }, retry: true },
    { name: 'attempts: 2 → the third try is not retried', response: { status: 503 }, ctx: { attempt: 3 }, retry: false, counter: 'exhausted' },
    { name: 'attempts: 2 → the second try is', response: { status: 503 }, ctx: { attempt: 2 }, retry: true },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const f = await loadFilter(PKG, { config: { ...NO_BUDGET, ...c.config } });
      const r = f.response(c.response, c.request ?? {}, c.ctx);
      expect(r.action).toBe(c.retry ? 'retry' : 'continue');
      if (c.counter) expect(f.counters.get(c.counter)).toBe(1);
    });
  }
});

describe('retry filter: timing', () => {
  it('backs off with full jitter: random(0, min(max, base × 2^(n-1)))', async () => {
    const cases: Array<[number, number, number]> = [[1, 0.999, 25], [2, 0.999, 50], [3, 0.999, 100], [5, 0.999, 250], [2, 0, 0]];
    for (const [attempt, draw, want] of cases) {
      const f = await loadFilter(PKG, { config: { ...NO_BUDGET, attempts: 9 }, random: () => draw });
      expect(f.response({ status: 503 }, {}, { attempt })).toMatchObject({ action: 'retry', delayMs: want });
    }
  });

  it('honours Retry-After in seconds and as an HTTP date, and gives up past retryAfter.maxMs', async () => {
    const f = await loadFilter(PKG, { config: { ...NO_BUDGET, retryOn: ['retriable-status-codes'], retriableStatusCodes: [429], retryAfter: { maxMs: 5_000 } }, random: () => 0 });
    expect(f.response({ status: 429, headers: { 'retry-after': '2' } }, {})).toMatchObject({ action: 'retry', delayMs: 2000 });
    const at = new Date(Date.now() + 3_000).toUTCString();
    const r = f.response({ status: 429, headers: { 'retry-after': at } }, {});
    if (r.action !== 'retry') throw new Error('expected a retry');
    expect(r.delayMs).toBeGreaterThan(1_000);
    expect(r.delayMs).toBeLessThanOrEqual(3_000);
    expect(f.response({ status: 429, headers: { 'retry-after': '60' } }, {}).action).toBe('continue');
    expect(f.counters.get('skipped_retry_after')).toBe(1);
  });

  it('sets the per-try timeout in the request phase', async () => {
    const f = await loadFilter(PKG, { config: { perTryTimeoutMs: 300 } });
    expect(f.request({})).toMatchObject({ action: 'continue', directives: { perTryTimeoutMs: 300 } });
    const g = await loadFilter(PKG, { config: {} });
    expect(g.request({})).toMatchObject({ action: 'continue', directives: {} });
  });
});

describe('retry filter: budget', () => {
  const cases: Array<[string, { activeRequests: number; activeRetries: number }, number, boolean]> = [
    ['under minRetryConcurrency', { activeRequests: 2, activeRetries: 2 }, 1, true],
    ['at minRetryConcurrency with few requests', { activeRequests: 4, activeRetries: 3 }, 1, false],
    ['20% of 100 in flight allows 20 retries', { activeRequests: 100, activeRetries: 19 }, 1, true],
    ['but not a 21st', { activeRequests: 100, activeRetries: 20 }, 1, false],
    ['a request already retrying counts itself once', { activeRequests: 100, activeRetries: 20 }, 2, true],
  ];
  for (const [name, load, attempt, retry] of cases) {
    it(name, async () => {
      const f = await loadFilter(PKG, { config: { attempts: 5 } });
      const r = f.response({ status: 503 }, {}, { attempt, load });
      expect(r.action).toBe(retry ? 'retry' : 'continue');
      if (!retry) {
        expect(f.counters.get('budget_exhausted')).toBe(1);
        expect(f.logs.at(-1)?.message).toMatch(/retry budget exhausted/);
      }
    });
  }
});
