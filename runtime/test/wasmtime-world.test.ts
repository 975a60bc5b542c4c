/**
 * The wasmtime engine on the ambit:filter@0.2.0 world: the world conformance suite every
 * engine passes (`conformance-world.ts`), then what is the wasmtime host's own, on the same
 * probe component (`sdk/test/fixtures/probe-filter.wat`): per-request instances, a failed
 * call's changes taken back before the next filter runs (the heads are changed in place),
 * the coded messages of invalid output, a handle kept past return, and the in-thread
 * `benchPhase`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { sha256Hex } from '@ambit/filter-sdk/host';
import { loadNative, WasmtimeEngine, type FilterBinding, type PhaseOutcome } from '@ambit/runtime';
import { probeComponent } from '../../sdk/test/fixtures/probe.js';
import { ctx, request } from './conformance.js';
import { describeWorldConformance } from './conformance-world.js';

const native = loadNative();
const hasCargo = !spawnSync('cargo', ['--version'], { stdio: 'ignore' }).error;
const skip = !native.ok && !hasCargo ? `the wasmtime addon is not built here and cargo is missing (${native.reason})` : undefined;

let engine: WasmtimeEngine;
let wasm: Uint8Array;

const probe = (name: string, extra: Partial<FilterBinding> = {}): FilterBinding => ({
  name, wasm, sha256: sha256Hex(wasm), capabilities: ['log', 'counters', 'traffic'], config: {}, ...extra,
});

/** Operations as `[tag, name, value?]`. */
function flat(o: PhaseOutcome): string[][] {
  if (o.action !== 'continue') throw new Error(`expected continue, got ${JSON.stringify(o)}`);
  return o.ops.map((op) => (op.tag === 'remove' ? [op.tag, op.val] : [op.tag, ...op.val]));
}

describe.skipIf(skip !== undefined)(`wasmtime engine, ambit:filter@0.2.0${skip ? ` (skipped: ${skip})` : ''}`, () => {
  describeWorldConformance('wasmtime', () => new WasmtimeEngine({ threads: 2, cacheDir: false, onLog: () => {} }));

  beforeAll(async () => {
    wasm = await probeComponent();
    engine = new WasmtimeEngine({ threads: 1, cacheDir: false, onLog: () => {} });
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('gives the same operations on pooled and per-request instances; header names come lower-case', async () => {
    const ops: unknown[] = [];
    for (const instances of ['pooled', 'per-request'] as const) {
      const chain = await engine.createChain([probe(`p-${instances}`, { instances })]);
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx({ requestId: 'r-1' }), request: request('/items', [['X-In', 'v'], ['Cookie', 'c']]) });
      expect(out).toMatchObject({ action: 'continue', failures: [] });
      ops.push(flat(out));
      await chain.close();
    }
    expect(ops[1]).toEqual(ops[0]);
    expect(ops[0]).toContainEqual(['set', 'x-out', 'v']);
    expect(ops[0]).toContainEqual(['remove', 'cookie']);
  });

  it('takes back the changes of a failed call: a fail-open failure leaves the next filter the head as it was', async () => {
    // On /e the probe sets 22 headers, then calls shared storage: without the `shared`
    // capability that traps. The next filter (with it) must see the 3 headers the request
    // came with, and the operations must be its own only.
    const chain = await engine.createChain([
      probe('half', { failurePolicy: 'fail-open' }),
      probe('whole', { capabilities: ['log', 'counters', 'clock', 'random', 'shared', 'traffic'] }),
    ]);
    const req = { method: 'GET', scheme: 'http', authority: 'api.test', path: '/e', headers: [['accept', '*/*'], ['x-multi', 'one'], ['x-multi', 'two']] as Array<[string, string]> };
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: req });
    expect(out.failures).toMatchObject([{ filter: 'half', kind: 'trap', policy: 'fail-open' }]);
    expect(out.failures[0]!.message).toContain('"shared"');
    const ops = flat(out);
    expect(ops.slice(0, 4)).toEqual([['set', 'x-size', '3'], ['set', 'x-multi-count', '2'], ['set', 'x-multi-first', 'one'], ['set', 'x-entries', '3']]);
    expect(ops.filter((o) => o[1] === 'x-size')).toHaveLength(1);
    expect(ops.at(-1)?.[1]).toBe('x-random');
    await chain.close();
  });

  it('refuses invalid output before it reaches the wire: the call fails with what was wrong', async () => {
    const chain = await engine.createChain([probe('bad')]);
    const cases: Array<[string, string]> = [
      ['/h', 'AMBIT_ERR_FILTER_OUTPUT: filter bad used the header name "bad name", which is not a valid HTTP field name'],
      ['/n', 'AMBIT_ERR_FILTER_OUTPUT: filter bad set the header x-nl to "a\\nb", which is not a valid HTTP field value'],
      ['/v', 'AMBIT_ERR_FILTER_OUTPUT: filter bad answered with status 99; a local response is 200–599'],
    ];
    for (const [path, message] of cases) {
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request(path) });
      expect(out, path).toMatchObject({ action: 'respond', response: { status: 503 }, failures: [{ filter: 'bad', kind: 'trap', policy: 'fail-closed' }] });
      expect(out.failures[0]!.message, path).toContain(message);
    }
    const status = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/s'), response: { status: 200, headers: [] } });
    expect(status.failures[0]!.message).toContain('AMBIT_ERR_FILTER_OUTPUT: filter bad set the status 600; an HTTP status is 100–599');
    await chain.close();
  });

  it('traps a filter that returns still holding a handle it was lent', async () => {
    const chain = await engine.createChain([probe('keeper')]);
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/k') });
    expect(out.failures).toMatchObject([{ filter: 'keeper', kind: 'trap' }]);
    expect(out.failures[0]!.message).toContain('the filter returned still holding a handle it was lent');
    expect(await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/items') })).toMatchObject({ action: 'continue', failures: [] });
    await chain.close();
  });

  it('runs a phase in-thread for benchmarks and says what it ran', async () => {
    const chain = await engine.createChain([probe('b1')]);
    const bench = engine.benchPhase(chain, { phase: 'requestHeaders', ctx: ctx({ requestId: 'r-b' }), request: request('/items', [['x-in', 'v']]) }, 50);
    expect(bench.iterations).toBe(50);
    expect(bench.phaseUs.p50).toBeGreaterThan(0);
    expect(bench.phaseUs.p99).toBeGreaterThanOrEqual(bench.phaseUs.p50);
    // Every run starts from the same input (on /rewritten the probe would answer 418 instead).
    expect(bench.outcome).toMatchObject({
      action: 'continue', failures: [],
      ops: [
        { tag: 'set', val: ['x-out', 'v'] }, { tag: 'append', val: ['x-tag', 'wat'] }, { tag: 'remove', val: 'cookie' },
        { tag: 'set', val: ['x-request-id', 'r-b'] }, { tag: 'set', val: [':path', '/rewritten'] },
      ],
    });
    await chain.close();
  });
});
