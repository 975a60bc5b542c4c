/**
 * The V8 engine on the ambit:filter@0.2.0 world, with a component whose every call is
 * known (`sdk/test/fixtures/probe-filter.wat`): one crossing per phase for the whole
 * chain, each filter seeing the changes before it, failures of the new world's rules
 * (read-only forwarded request, invalid output) answered by policy, the watchdog, and a
 * 0.1 component refused at load.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '@ambit/filter-sdk/host';
import { V8Engine, type FilterBinding } from '@ambit/runtime';
import { probeComponent, worldV01Component } from '../../sdk/test/fixtures/probe.js';
import { ctx, request } from './conformance.js';

let engine: V8Engine;
let wasm: Uint8Array;

const probe = (name: string, extra: Partial<FilterBinding> = {}): FilterBinding => ({
  name, wasm, sha256: sha256Hex(wasm), capabilities: ['log', 'counters', 'traffic'], config: {}, ...extra,
});

beforeAll(async () => {
  wasm = await probeComponent();
  engine = new V8Engine({ workers: 2, onLog: () => {} });
});
afterAll(async () => {
  await engine?.close();
});

describe('V8 engine, ambit:filter@0.2.0', () => {
  it('returns the header changes of a request phase as operations', async () => {
    const chain = await engine.createChain([probe('p')]);
    expect(chain.filters[0]!.phases).toEqual(['connection', 'requestHeaders', 'responseHeaders']);
    expect(engine.info()['bindings']).toMatchObject({ p: 'direct' });
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx({ requestId: 'r-1' }), request: request('/items', [['x-in', 'v'], ['cookie', 'c']]) });
    expect(out).toMatchObject({
      action: 'continue',
      ops: [
        { tag: 'set', val: ['x-out', 'v'] }, { tag: 'append', val: ['x-tag', 'wat'] }, { tag: 'remove', val: 'cookie' },
        { tag: 'set', val: ['x-request-id', 'r-1'] }, { tag: 'set', val: [':path', '/rewritten'] },
      ],
      failures: [],
    });
    await chain.close();
  });

  it('shows each filter the changes of the ones before it, in one crossing', async () => {
    // The first rewrites the path to /rewritten; the second reads it and answers 418 for /r….
    const chain = await engine.createChain([probe('p1'), probe('p2')]);
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/items') });
    expect(out).toMatchObject({ action: 'respond', filter: 'p2', response: { status: 418, body: 'teapot' } });
    expect(out.calls.map((c) => [c.filter, c.outcome])).toEqual([['p1', 'ok'], ['p2', 'ok']]);
    await chain.close();
  });

  it('answers a change to the forwarded request in the response phase per policy', async () => {
    const chain = await engine.createChain([probe('ro')]);
    const out = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/m'), response: { status: 200, headers: [] } });
    expect(out.action).toBe('respond');
    if (out.action !== 'respond') return;
    expect(out.response.status).toBe(503);
    expect(out.response.headers).toContainEqual(['x-ambit-filter-error', 'ro; trap']);
    expect(out.failures[0]?.message).toContain('the forwarded request is read-only in the response phase');
    // The instance was replaced: the next response is served.
    const next = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/a'), response: { status: 404, headers: [] } });
    expect(next).toMatchObject({ action: 'continue', ops: [{ tag: 'set', val: ['x-request-path', '/a'] }, { tag: 'set', val: [':status', '410'] }] });
    await chain.close();
  });

  it('skips a fail-open filter whose output is invalid, keeping the changes before it', async () => {
    const chain = await engine.createChain([probe('bad', { failurePolicy: 'fail-open' })]);
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/h') });
    expect(out).toMatchObject({ action: 'continue', ops: [], failures: [{ filter: 'bad', kind: 'trap', policy: 'fail-open' }] });
    expect(out.failures[0]!.message).toContain('not a valid HTTP field name');
    await chain.close();
  });

  it('passes traffic directives and decides connections', async () => {
    const chain = await engine.createChain([probe('t')]);
    expect(await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/d') })).toMatchObject({ action: 'continue', directives: { delayMs: 5, subset: 'v2' } });
    const conn = { context: ctx(), tls: undefined };
    expect(await chain.run({ phase: 'connection', conn })).toMatchObject({ action: 'deny', reason: 'plaintext', filter: 't' });
    expect(await chain.run({ phase: 'connection', conn: { ...conn, tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' } } })).toMatchObject({ action: 'continue' });
    await chain.close();
  });

  it('stops a call past its deadline and keeps serving', async () => {
    const chain = await engine.createChain([probe('spin', { deadlineMs: 100 })]);
    const stuck = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/w') });
    expect(stuck).toMatchObject({ action: 'respond', response: { status: 503 }, failures: [{ filter: 'spin', kind: 'deadline' }] });
    expect(await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/d') })).toMatchObject({ action: 'continue' });
    await chain.close();
  });

  it('refuses a 0.1 component at load, naming the SDK to rebuild with', async () => {
    const old = await worldV01Component();
    await expect(engine.createChain([{ ...probe('old'), wasm: old, sha256: sha256Hex(old) }])).rejects.toMatchObject({
      code: 'AMBIT_ERR_WRONG_WORLD',
      message: expect.stringContaining('was built for ambit:filter@0.1.x (it exports ambit:filter/handler@0.1.0); this host runs ambit:filter@0.2.x filters: rebuild it with @ambit/filter-sdk 0.2 (npx ambit-filter build)'),
    });
  });
});
