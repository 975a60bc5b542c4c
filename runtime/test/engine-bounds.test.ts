/**
 * Engine bounds, on each engine: what one node proxy holds for its filters is bounded.
 *
 * - The phase queue: past `maxQueue` phases waiting, new ones fail closed at once
 *   (`the filter queue is full`), as V8's always did; the wasmtime engine's too.
 * - Per-call caps (CALL_LIMITS): more log lines, counter updates or returned bytes than a call
 *   may make fail that call; the binding's failure policy decides (fail-closed: a 503 naming the
 *   filter; fail-open: the filter is skipped). Later calls work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindingFromArtifact, loadNative, V8Engine, WasmtimeEngine, type FilterBinding, type FilterEngine } from '@ambit/runtime';
import { CALL_LIMITS, OUTPUT_LIMITS } from '@ambit/filter-sdk/host';
import { ctx, request } from './conformance.js';
import { buildFixtures, type Fixtures } from './fixtures.js';

const native = loadNative();

function make(kind: 'v8' | 'wasmtime', options: { maxQueue?: number } = {}): FilterEngine {
  if (kind === 'v8') return new V8Engine({ workers: 1, onLog: () => {}, ...options });
  if (!native.ok) throw new Error(`the wasmtime addon does not load: ${native.reason}`);
  return new WasmtimeEngine({ threads: 1, cacheDir: false, onLog: () => {}, ...options });
}

describe.each(['v8', 'wasmtime'] as const)('engine bounds (engine: %s)', (kind) => {
  let fx: Fixtures;
  let engine: FilterEngine;
  beforeAll(async () => {
    fx = await buildFixtures();
    engine = make(kind);
  });
  afterAll(async () => {
    await engine?.close();
  });

  const mis = (config: Record<string, unknown>, extra: Partial<FilterBinding> = {}): FilterBinding => ({
    ...bindingFromArtifact(fx.misbehave, { config, name: `misbehave-${String(config.tag)}`, deadlineMs: 5000 }),
    ...extra,
  });

  it('a full phase queue fails new phases closed at once, and drains', async () => {
    const small = make(kind, { maxQueue: 4 });
    try {
      // Each call spins until its deadline: the queue fills behind the first.
      const chain = await small.createChain([mis({ tag: 'slow', mode: 'loop', trigger: '/slow' }, { deadlineMs: 100 })]);
      const outs = await Promise.all(Array.from({ length: 16 }, () => chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/slow') })));
      const refused = outs.filter((o) => o.failures.some((f) => /filter queue is full/.test(f.message)));
      expect(refused.length).toBeGreaterThanOrEqual(16 - 4 - 2);
      for (const o of refused) {
        expect(o.failures[0]).toMatchObject({ filter: 'misbehave-slow', kind: 'unavailable', policy: 'fail-closed' });
        expect(o).toMatchObject({ action: 'respond', response: { status: 503 } });
      }
      // The others ran (to their deadline), and a later phase is served.
      expect(outs.filter((o) => o.failures.some((f) => f.kind === 'deadline')).length).toBeGreaterThanOrEqual(1);
      const later = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/fine') });
      expect(later.action).toBe('continue');
      await chain.close();
    } finally {
      await small.close();
    }
  });

  for (const [mode, cap] of [['flood-logs', 'log lines'], ['flood-counters', 'counter updates'], ['huge-response', 'bytes'], ['huge-headers', 'bytes']] as const) {
    it(`${mode}: over the per-call cap on ${cap} is a filter failure under the binding's policy`, async () => {
      const closed = await engine.createChain([mis({ tag: `${mode}-closed`, mode, trigger: '/over' })]);
      const out = await closed.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/over') });
      expect(out.failures).toMatchObject([{ filter: `misbehave-${mode}-closed`, kind: 'trap', policy: 'fail-closed' }]);
      // Header changes meet the output rules' tighter cap first (100 headers or 64 KiB added per call).
      const limit = mode === 'huge-headers' ? OUTPUT_LIMITS.addedHeaderBytes : cap === 'bytes' ? CALL_LIMITS.resultBytes : cap === 'log lines' ? CALL_LIMITS.logLines : CALL_LIMITS.counterUpdates;
      expect(out.failures[0]!.message).toContain(`${limit}`);
      expect(out).toMatchObject({ action: 'respond', response: { status: 503 } });
      // The next call of the same binding is served.
      expect((await closed.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/fine') })).action).toBe('continue');
      await closed.close();

      const open = await engine.createChain([mis({ tag: 'a' }), mis({ tag: `${mode}-open`, mode, trigger: '/over' }, { failurePolicy: 'fail-open' })]);
      const skipped = await open.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/over') });
      expect(skipped.failures).toMatchObject([{ filter: `misbehave-${mode}-open`, kind: 'trap', policy: 'fail-open' }]);
      expect(skipped.action).toBe('continue');
      await open.close();
    });
  }
});
