/**
 * The wasmtime engine on the ambit:filter@0.2.0 world, with the component whose every
 * call is known (`sdk/test/fixtures/probe-filter.wat`): the context and heads lent to
 * each filter and changed in place (the next filter sees the change), the changes
 * reported as operations, a failed call taken back, the forwarded request read-only in
 * the response phase, invalid output answered by policy, a handle kept past return, and
 * a 0.1 component refused at load. The same component and expectations as the V8
 * engine's `v8-world.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { sha256Hex } from '@ambit/filter-sdk/host';
import { loadNative, WasmtimeEngine, type FilterBinding, type PhaseOutcome } from '@ambit/runtime';
import { probeComponent, worldV01Component } from '../../sdk/test/fixtures/probe.js';
import { ctx, request } from './conformance.js';
import { wrongWorldComponent } from './wrong-world.js';

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
  beforeAll(async () => {
    wasm = await probeComponent();
    engine = new WasmtimeEngine({ threads: 1, cacheDir: false, onLog: () => {} });
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('returns the header changes of a request phase as operations; names come lower-case', async () => {
    for (const instances of ['pooled', 'per-request'] as const) {
      const chain = await engine.createChain([probe('p', { instances })]);
      expect(chain.filters[0]!.phases).toEqual(['connection', 'requestHeaders', 'responseHeaders']);
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx({ requestId: 'r-1' }), request: request('/items', [['X-In', 'v'], ['Cookie', 'c']]) });
      expect(out).toMatchObject({
        action: 'continue',
        ops: [
          { tag: 'set', val: ['x-out', 'v'] }, { tag: 'append', val: ['x-tag', 'wat'] }, { tag: 'remove', val: 'cookie' },
          { tag: 'set', val: ['x-request-id', 'r-1'] }, { tag: 'set', val: [':path', '/rewritten'] },
        ],
        failures: [],
      });
      await chain.close();
    }
  });

  it('shows each filter the changes of the ones before it, in one crossing', async () => {
    // The first rewrites the path to /rewritten; the second reads it and answers 418 for /r….
    const chain = await engine.createChain([probe('p1'), probe('p2')]);
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/items') });
    expect(out).toMatchObject({ action: 'respond', filter: 'p2', response: { status: 418, headers: [['x-a', '1']], body: 'teapot' } });
    expect(out.calls.map((c) => [c.filter, c.outcome])).toEqual([['p1', 'ok'], ['p2', 'ok']]);
    await chain.close();
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

  it('answers a change to the forwarded request in the response phase per policy', async () => {
    const chain = await engine.createChain([probe('ro')]);
    const out = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/m'), response: { status: 200, headers: [] } });
    expect(out.action).toBe('respond');
    if (out.action !== 'respond') return;
    expect(out.response.status).toBe(503);
    expect(out.failures[0]?.message).toContain('AMBIT_ERR_HOST_CALL: filter ro tried to change the request in onResponse');
    expect(out.failures[0]?.message).toContain('the forwarded request is read-only in the response phase');
    // The instance was replaced: the next response is served.
    const next = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/a'), response: { status: 404, headers: [['Server', 'up']] } });
    expect(next).toMatchObject({ action: 'continue', ops: [{ tag: 'set', val: ['x-request-path', '/a'] }, { tag: 'set', val: [':status', '410'] }] });
    const retry = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/y'), response: { status: 503, headers: [] } });
    expect(retry).toMatchObject({ action: 'retry', retry: { delayMs: 10, reason: 'again' }, filter: 'ro' });
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

  it('skips a fail-open filter whose output is invalid, with none of its changes', async () => {
    const chain = await engine.createChain([probe('bad', { failurePolicy: 'fail-open' })]);
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/h') });
    expect(out).toMatchObject({ action: 'continue', ops: [], failures: [{ filter: 'bad', kind: 'trap', policy: 'fail-open' }] });
    expect(out.failures[0]!.message).toContain('not a valid HTTP field name');
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

  it('lends the context, the heads and the host facts: every read, as the V8 engine answers them', async () => {
    const chain = await engine.createChain([probe('echo', { capabilities: ['log', 'counters', 'clock', 'random', 'shared', 'traffic'] })]);
    const context = {
      ...ctx({
        direction: 'outbound', service: 'api.a', route: 'r1', attempt: 3,
        source: { identity: 'spiffe://td/ns/a/sa/b', workload: 'web', namespace: 'a', address: '10.0.0.1', port: 40123 },
        destination: { workload: 'api', address: '10.0.0.2', port: 8443 },
      }),
      tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: 'api.test' },
    };
    const req = { method: 'POST', scheme: 'https', authority: 'api.test', path: '/e', headers: [['accept', '*/*'], ['x-multi', 'one'], ['x-multi', 'two']] as Array<[string, string]> };
    const out = await chain.run({ phase: 'requestHeaders', ctx: context, request: req });
    const ops = flat(out);
    const random = ops.find((o) => o[1] === 'x-random');
    expect(Number(random?.[2])).toBeGreaterThanOrEqual(0);
    expect(Number(random?.[2])).toBeLessThan(100);
    expect(ops.filter((o) => o[1] !== 'x-random')).toEqual([
      ['set', 'x-size', '3'], ['set', 'x-multi-count', '2'], ['set', 'x-multi-first', 'one'], ['set', 'x-entries', '3'],
      ['set', 'x-entry0', 'accept'], ['set', 'x-has-accept', '1'], ['set', 'x-method', 'POST'], ['set', 'x-scheme', 'https'],
      ['set', 'x-authority', 'api.test'], ['set', 'x-direction', 'outbound'], ['set', 'x-src-identity', 'spiffe://td/ns/a/sa/b'],
      ['set', 'x-src-workload', 'web'], ['set', 'x-src-namespace', 'a'], ['set', 'x-src-address', '10.0.0.1'], ['set', 'x-src-port', '40123'],
      ['set', 'x-dst-workload', 'api'], ['set', 'x-dst-port', '8443'], ['set', 'x-service', 'api.a'], ['set', 'x-route', 'r1'],
      ['set', 'x-attempt', '3'], ['set', 'x-tls-version', 'TLSv1.3'], ['set', 'x-sni', 'api.test'], ['set', 'x-shared-add', '2'],
      ['set', 'x-shared-set', '1'], ['set', 'x-shared-value', 'v1'], ['set', 'x-shared-version-is-set', '1'],
    ]);
    expect(out.action === 'continue' && out.directives).toEqual({ perTryTimeoutMs: 700 });
    const res = await chain.run({
      phase: 'responseHeaders', ctx: ctx(), request: { ...req, method: 'PUT', headers: [['x-in', 'forwarded']] },
      response: { status: 502, headers: [['Server', 'up'], ['x-multi', 'a'], ['x-multi', 'b']] },
      facts: { upstreamError: 'reset', load: { activeRequests: 4, activeRetries: 1 } },
    });
    expect(flat(res)).toEqual([
      ['set', 'x-server', 'up'], ['remove', 'server'], ['append', 'x-a', '1'], ['set', 'x-status', '502'], ['set', 'x-size', '3'],
      ['set', 'x-multi-count', '2'], ['set', 'x-entries', '3'], ['set', 'x-entry0-value', 'up'], ['set', 'x-has-server', '1'],
      ['set', 'x-upstream-error', 'reset'], ['set', 'x-load-active', '4'], ['set', 'x-load-retries', '1'], ['set', 'x-req-method', 'PUT'],
      ['set', 'x-req-in', 'forwarded'],
    ]);
    await chain.close();
  });

  it('decides connections from the context', async () => {
    const chain = await engine.createChain([probe('t')]);
    const conn = { context: ctx(), tls: undefined };
    expect(await chain.run({ phase: 'connection', conn })).toMatchObject({ action: 'deny', reason: 'plaintext', filter: 't' });
    expect(await chain.run({ phase: 'connection', conn: { ...conn, tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' } } })).toMatchObject({ action: 'continue' });
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

  it('refuses a 0.1 component at load, naming the SDK to rebuild with', async () => {
    const old = await worldV01Component();
    await expect(engine.createChain([{ ...probe('old'), wasm: old, sha256: sha256Hex(old) }])).rejects.toMatchObject({
      code: 'AMBIT_ERR_WRONG_WORLD',
      message: expect.stringContaining(
        'filter old was built for ambit:filter@0.1.x (it exports ambit:filter/handler@0.1.0); this host runs ambit:filter@0.2.x filters: rebuild it with @ambit/filter-sdk 0.2 (npx ambit-filter build)',
      ),
    });
    const other = await wrongWorldComponent();
    await expect(engine.createChain([{ ...probe('other'), wasm: other, sha256: sha256Hex(other) }])).rejects.toMatchObject({
      code: 'AMBIT_ERR_WRONG_WORLD',
      message: expect.stringContaining('but not ambit:filter/handler@0.2.x'),
    });
  });
});
