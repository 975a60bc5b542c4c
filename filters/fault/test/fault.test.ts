/** The fault filter in the harness: percentages made deterministic with a fixed random(). */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { AmbitError } from '@ambit/filter-sdk/host';
import { loadFilter, type RequestInput } from '@ambit/filter-sdk/testing';
import { buildIfStale } from '../../../runtime/test/fixtures.js';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

beforeAll(async () => { await buildIfStale(PKG); });

/** A generator that returns `values` in turn. */
const seq = (...values: number[]) => { let i = 0; return () => values[i++ % values.length]!; };

describe('fault filter: delay and abort by percentage', () => {
  const both = { delay: { percentage: 50, fixedDelayMs: 200 }, abort: { percentage: 10, httpStatus: 503 } };
  const cases: Array<{ name: string; config: unknown; draws: number[]; request?: RequestInput; want: 'delay' | 'abort' | 'none' | 'grpc-abort' }> = [
    { name: 'a draw under the delay percentage delays', config: both, draws: [0.49, 0.5], want: 'delay' },
    { name: 'a draw at the percentage does not', config: both, draws: [0.5, 0.5], want: 'none' },
    { name: 'a draw under the abort percentage aborts', config: both, draws: [0.9, 0.05], want: 'abort' },
    { name: '100% always, whatever the draw', config: { delay: { percentage: 100, fixedDelayMs: 5 } }, draws: [0.999999], want: 'delay' },
    { name: '0% never', config: { abort: { percentage: 0, httpStatus: 500 } }, draws: [0], want: 'none' },
    { name: 'fractions of a percent', config: { abort: { percentage: 0.5, httpStatus: 500 } }, draws: [0.004], want: 'abort' },
    { name: 'gRPC abort: 200 with grpc-status', config: { abort: { percentage: 100, grpcStatus: 14 } }, draws: [0], want: 'grpc-abort' },
    { name: 'header match: absent header → not eligible', config: { ...both, match: { 'x-chaos': '' } }, draws: [0, 0], want: 'none' },
    { name: 'header match: present (any value)', config: { ...both, match: { 'x-chaos': '' } }, draws: [0.9, 0], request: { headers: { 'x-chaos': 'yes' } }, want: 'abort' },
    { name: 'header match: wrong value', config: { ...both, match: { 'x-chaos': 'on' } }, draws: [0, 0], request: { headers: { 'x-chaos': 'off' } }, want: 'none' },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const f = await loadFilter(PKG, { config: c.config, random: seq(...c.draws) });
      const r = f.request(c.request ?? {});
      switch (c.want) {
        case 'none':
          expect(r).toMatchObject({ action: 'continue', ops: [], directives: {} });
          break;
        case 'delay': {
          if (r.action !== 'continue') throw new Error(`expected continue, got ${r.action}`);
          const ms = (c.config as { delay: { fixedDelayMs: number } }).delay.fixedDelayMs;
          expect(r.directives).toEqual({ delayMs: ms });
          expect(r.request.headers).toContainEqual(['x-ambit-fault', 'delay']);
          expect(f.counters.get('delays_injected')).toBe(1);
          break;
        }
        case 'abort':
          expect(r).toMatchObject({ action: 'respond', response: { status: (c.config as { abort: { httpStatus: number } }).abort.httpStatus, body: 'fault filter abort\n' } });
          expect(f.counters.get('aborts_injected')).toBe(1);
          break;
        case 'grpc-abort':
          expect(r).toMatchObject({ action: 'respond', response: { status: 200 } });
          if (r.action === 'respond') expect(r.response.headers).toContainEqual(['grpc-status', '14']);
          break;
      }
    });
  }

  it('injects about the configured share over many requests with the real generator', async () => {
    const f = await loadFilter(PKG, { config: { abort: { percentage: 25, httpStatus: 503 } } });
    let aborted = 0;
    for (let i = 0; i < 2000; i++) if (f.request({}).action === 'respond') aborted++;
    // 25% of 2000 = 500; the binomial sd is ~19, so ±120 is over 6 sd.
    expect(aborted).toBeGreaterThan(380);
    expect(aborted).toBeLessThan(620);
  });
});

describe('fault filter: bad config', () => {
  const bad: Array<[string, unknown, string]> = [
    ['neither delay nor abort', {}, 'AMBIT_ERR_CONFIG_REJECTED'],
    ['an abort with both statuses', { abort: { percentage: 1, httpStatus: 500, grpcStatus: 2 } }, 'AMBIT_ERR_CONFIG_REJECTED'],
    ['an abort with no status', { abort: { percentage: 1 } }, 'AMBIT_ERR_CONFIG_REJECTED'],
    ['a percentage over 100', { delay: { percentage: 101, fixedDelayMs: 1 } }, 'AMBIT_ERR_CONFIG_INVALID'],
  ];
  for (const [name, config, code] of bad) {
    it(`refuses ${name}`, async () => {
      const e = await loadFilter(PKG, { config }).then(() => undefined, (err: unknown) => err);
      expect(e).toBeInstanceOf(AmbitError);
      expect((e as AmbitError).code).toBe(code);
    });
  }
});
