/**
 * Conformance to the ambit:filter@0.2.0 world, for every engine: a component whose every
 * call is known (`sdk/test/fixtures/probe-filter.wat`, written against the canonical ABI)
 * run through `FilterEngine`: the values of the world lifted and lowered, one crossing per
 * phase for the whole chain with each filter seeing the changes before it, the rules of
 * the world (the forwarded request read-only in the response phase, checked output)
 * answered by policy, the deadline, and a 0.1 component refused at load. Call
 * `describeWorldConformance` from an engine's test file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '@ambit/filter-sdk/host';
import type { FilterBinding, FilterEngine } from '@ambit/runtime';
import { probeComponent, worldV01Component } from '../../sdk/test/fixtures/probe.js';
import { ctx, request } from './conformance.js';

export function describeWorldConformance(name: string, makeEngine: () => FilterEngine): void {
  describe(`world conformance (ambit:filter@0.2.0): ${name}`, () => {
    let engine: FilterEngine;
    let wasm: Uint8Array;

    const probe = (filter: string, extra: Partial<FilterBinding> = {}): FilterBinding => ({
      name: filter, wasm, sha256: sha256Hex(wasm), capabilities: ['log', 'counters', 'traffic'], config: {}, ...extra,
    });

    beforeAll(async () => {
      wasm = await probeComponent();
      engine = makeEngine();
    });
    afterAll(async () => {
      await engine?.close();
    });

    it('returns the header changes of a request phase as operations', async () => {
      const chain = await engine.createChain([probe('p')]);
      expect(chain.filters[0]!.phases).toEqual(['connection', 'requestHeaders', 'responseHeaders']);
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

    it('lifts and lowers every value of the world (context, heads, host functions)', async () => {
      const chain = await engine.createChain([probe('echo', { capabilities: ['log', 'counters', 'clock', 'random', 'shared', 'traffic'] })]);
      const facts = ctx({ direction: 'outbound', attempt: 2, service: 'api.a', route: 'r1', tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: 'api.test' } });
      const req = { ...request('/e', [['accept', '*/*'], ['x-multi', 'one'], ['x-multi', 'two']]), method: 'POST' };
      const out = await chain.run({ phase: 'requestHeaders', ctx: facts, request: req });
      expect(out.action).toBe('continue');
      if (out.action !== 'continue') return;
      const set = Object.fromEntries(out.ops.flatMap((o) => (o.tag === 'set' ? [o.val] : [])));
      expect(set).toMatchObject({
        'x-size': '3', 'x-multi-count': '2', 'x-multi-first': 'one', 'x-entries': '3', 'x-entry0': 'accept', 'x-has-accept': '1',
        'x-method': 'POST', 'x-scheme': 'http', 'x-authority': 'api.default', 'x-direction': 'outbound',
        'x-src-identity': facts.source.identity, 'x-src-workload': 'web', 'x-src-namespace': 'default', 'x-src-address': '10.1.0.5', 'x-src-port': '41000',
        'x-dst-workload': 'api', 'x-dst-port': '8080', 'x-service': 'api.a', 'x-route': 'r1', 'x-attempt': '2',
        'x-tls-version': 'TLSv1.3', 'x-sni': 'api.test', 'x-shared-set': '1', 'x-shared-value': 'v1', 'x-shared-version-is-set': '1',
      });
      expect(Number(set['x-shared-add'])).toBeGreaterThanOrEqual(2);
      expect(Number(set['x-random'])).toBeGreaterThanOrEqual(0);
      expect(Number(set['x-random'])).toBeLessThan(100);
      expect(out.directives).toMatchObject({ perTryTimeoutMs: 700 });

      const res = await chain.run({
        phase: 'responseHeaders', ctx: ctx(), request: { ...request('/e', [['x-in', 'forwarded']]), method: 'PUT' },
        response: { status: 502, headers: [['server', 'up'], ['x-multi', 'a'], ['x-multi', 'b']] },
        facts: { upstreamError: 'reset' },
      });
      expect(res.action).toBe('continue');
      if (res.action !== 'continue') return;
      expect(res.ops.slice(0, 3)).toEqual([{ tag: 'set', val: ['x-server', 'up'] }, { tag: 'remove', val: 'server' }, { tag: 'append', val: ['x-a', '1'] }]);
      expect(Object.fromEntries(res.ops.flatMap((o) => (o.tag === 'set' ? [o.val] : [])))).toMatchObject({
        'x-status': '502', 'x-size': '3', 'x-multi-count': '2', 'x-entries': '3', 'x-entry0-value': 'up', 'x-has-server': '1',
        'x-upstream-error': 'reset', 'x-load-active': '0', 'x-load-retries': '0', 'x-req-method': 'PUT', 'x-req-in': 'forwarded',
      });
      await chain.close();
    });

    it('names each peer with a key: the same peer keeps it, another peer gets another', async () => {
      const chain = await engine.createChain([probe('echo', { capabilities: ['log', 'counters', 'clock', 'random', 'shared', 'traffic'] })]);
      const keys = async (facts: ReturnType<typeof ctx>): Promise<{ src: string; dst: string }> => {
        const out = await chain.run({ phase: 'requestHeaders', ctx: facts, request: request('/e', []) });
        if (out.action !== 'continue') throw new Error(`expected continue, got ${out.action}`);
        const set = Object.fromEntries(out.ops.flatMap((o) => (o.tag === 'set' ? [o.val] : [])));
        return { src: set['x-src-key']!, dst: set['x-dst-key']! };
      };
      const first = await keys(ctx());
      expect(Number(first.src)).toBeGreaterThan(0);
      expect(Number(first.dst)).toBeGreaterThan(0);
      expect(first.dst).not.toBe(first.src);
      expect(await keys(ctx({ requestId: 'another request' }))).toEqual(first);
      const base = ctx();
      const moved = await keys(ctx({ source: { ...base.source, port: base.source.port + 1 } }));
      expect(moved.src).not.toBe(first.src);
      expect(moved.dst).toBe(first.dst);
      const unauthenticated = await keys(ctx({ source: { ...base.source, identity: undefined } }));
      expect(unauthenticated.src).not.toBe(first.src);
      expect(unauthenticated.src).not.toBe(moved.src);
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
      expect(out.failures[0]!.message).toContain('bad name');
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

    it('carries what a filter reported before it trapped into the failure (the proxy maps it to TypeScript lines)', async () => {
      const chain = await engine.createChain([probe('boom')]);
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/x') });
      expect(out).toMatchObject({ action: 'respond', response: { status: 503 }, failures: [{ filter: 'boom', kind: 'trap' }] });
      expect(out.failures[0]!.message).toContain('Error: boom');
      expect(out.failures[0]!.message).toContain('at onRequest (filter.js:1:10)');
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
        message: expect.stringMatching(/ambit:filter@0\.1\.x.*rebuild it with @ambit\/filter-sdk 0\.2 \(npx ambit-filter build\)/),
      });
    });
  });
}
