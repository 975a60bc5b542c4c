/**
 * The engine conformance suite: every FilterEngine (V8 today, wasmtime next) must
 * pass it unchanged. Call `describeEngineConformance` from an engine's test file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AmbitError, loadFilterArtifact, type Context, type RequestHead, type ResponseHead } from '@ambit/filter-sdk/host';
import { bindingFromArtifact, type FilterBinding, type FilterEngine, type PhaseOutcome } from '@ambit/runtime';
import { buildBuiltinFilters, buildFixtures, builtinDir, REPO, type Fixtures } from './fixtures.js';
import { wrongWorldComponent } from './wrong-world.js';

export function ctx(over: Partial<Context> = {}): Context {
  return {
    direction: 'inbound',
    source: { address: '10.1.0.5', port: 41000, identity: 'spiffe://mesh.test/ns/default/sa/web', workload: 'web', namespace: 'default' },
    destination: { address: '10.1.0.9', port: 8080, workload: 'api', namespace: 'default' },
    service: 'api.default',
    route: 'api',
    requestId: `req-${Math.random().toString(36).slice(2)}`,
    attempt: 1,
    ...over,
  };
}

export function request(path = '/', headers: Array<[string, string]> = []): RequestHead {
  return { method: 'GET', scheme: 'http', authority: 'api.default', path, headers };
}

function header(list: Array<[string, string]>, name: string): string[] {
  return list.filter(([k]) => k === name).map(([, v]) => v);
}

function opsHeaders(o: PhaseOutcome): Array<[string, string]> {
  if (o.action !== 'continue') throw new Error(`expected continue, got ${o.action}: ${JSON.stringify(o)}`);
  const req = request();
  for (const op of o.ops) {
    if (op.tag === 'append') req.headers.push(op.val);
    else if (op.tag === 'set') { req.headers = req.headers.filter(([k]) => k !== op.val[0]); req.headers.push(op.val); }
    else req.headers = req.headers.filter(([k]) => k !== op.val);
  }
  return req.headers;
}

export function describeEngineConformance(name: string, makeEngine: () => FilterEngine): void {
  describe(`engine conformance: ${name}`, () => {
    let fx: Fixtures;
    let engine: FilterEngine;
    const mis = (config: Record<string, unknown>, extra: Partial<FilterBinding> = {}): FilterBinding => ({
      ...bindingFromArtifact(fx.misbehave, { config, name: `misbehave-${String(config.tag)}` }),
      ...extra,
    });

    beforeAll(async () => {
      fx = await buildFixtures();
      engine = makeEngine();
    });
    afterAll(async () => {
      await engine?.close();
    });

    it('runs the request phase in chain order; each filter sees the changes before it', async () => {
      const chain = await engine.createChain([mis({ tag: 'a' }), mis({ tag: 'b' }), mis({ tag: 'c' })]);
      expect(chain.filters.map((f) => f.name)).toEqual(['misbehave-a', 'misbehave-b', 'misbehave-c']);
      expect(chain.filters[0]!.phases).toEqual(['connection', 'requestHeaders', 'responseHeaders']);
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx({ attempt: 3 }), request: request('/orders') });
      const h = opsHeaders(out);
      expect(header(h, 'x-chain')).toEqual(['a', 'b', 'c']);
      expect(header(h, 'x-seen-a')).toEqual(['-']);
      expect(header(h, 'x-seen-b')).toEqual(['a']);
      expect(header(h, 'x-seen-c')).toEqual(['a,b']);
      expect(header(h, 'x-attempt-b')).toEqual(['3']);
      expect(out.calls.map((c) => [c.filter, c.outcome])).toEqual([['misbehave-a', 'ok'], ['misbehave-b', 'ok'], ['misbehave-c', 'ok']]);
      expect(out.failures).toEqual([]);
      await chain.close();
    });

    it('runs the response phase in reverse order and shows the forwarded request', async () => {
      const chain = await engine.createChain([mis({ tag: 'a' }), mis({ tag: 'b' })]);
      const response: ResponseHead = { status: 200, headers: [] };
      const out = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/r'), response });
      expect(out.action).toBe('continue');
      const h = opsHeaders(out);
      expect(header(h, 'x-chain-res')).toEqual(['b', 'a']);
      expect(header(h, 'x-request-path-a')).toEqual(['/r']);
      await chain.close();
    });

    it('carries pseudo-header rewrites as operations', async () => {
      const chain = await engine.createChain([mis({ tag: 'a', rewritePath: '/v2/orders' })]);
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/orders') });
      expect(out.action === 'continue' && out.ops).toContainEqual({ tag: 'set', val: [':path', '/v2/orders'] });
      await chain.close();
    });

    it('stops the phase at a local response; later filters are not called', async () => {
      const chain = await engine.createChain([
        mis({ tag: 'a' }),
        bindingFromArtifact(fx.hello, { config: { denyPathPrefixes: ['/admin'] } }),
        mis({ tag: 'c' }),
      ]);
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/admin/users') });
      expect(out.action).toBe('respond');
      if (out.action !== 'respond') return;
      expect(out.filter).toBe('hello');
      expect(out.response.status).toBe(403);
      expect(out.response.body).toContain('forbidden by policy hello');
      expect(out.calls.map((c) => c.filter)).toEqual(['misbehave-a', 'hello']);
      await chain.close();
    });

    it('returns retry from the response phase', async () => {
      const chain = await engine.createChain([mis({ tag: 'r', mode: 'retry' })]);
      const first = await chain.run({ phase: 'responseHeaders', ctx: ctx({ attempt: 1 }), request: request(), response: { status: 503, headers: [] } });
      expect(first).toMatchObject({ action: 'retry', filter: 'misbehave-r', retry: { delayMs: 5, reason: 'misbehave r wants another try' } });
      const second = await chain.run({ phase: 'responseHeaders', ctx: ctx({ attempt: 2 }), request: request(), response: { status: 200, headers: [] } });
      expect(second.action).toBe('continue');
      await chain.close();
    });

    it('decides connections in the connection phase', async () => {
      const denyChain = await engine.createChain([mis({ tag: 'a' }), mis({ tag: 'd', mode: 'deny' })]);
      const conn = { context: ctx(), tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: undefined } };
      expect(await denyChain.run({ phase: 'connection', conn })).toMatchObject({ action: 'deny', filter: 'misbehave-d', reason: 'misbehave d denies 10.1.0.5' });
      const hello = await engine.createChain([bindingFromArtifact(fx.hello, { config: { requireIdentity: true } })]);
      expect((await hello.run({ phase: 'connection', conn })).action).toBe('continue');
      const anonymous = { context: ctx({ source: { address: '10.1.0.7', port: 1 } }), tls: undefined };
      expect(await hello.run({ phase: 'connection', conn: anonymous })).toMatchObject({ action: 'deny', reason: 'hello: 10.1.0.7 has no mTLS identity' });
      await denyChain.close();
      await hello.close();
    });

    it('stops a filter that loops past its deadline: 503 with the reason, other requests keep flowing', async () => {
      const chain = await engine.createChain([
        mis({ tag: 'a' }),
        mis({ tag: 'loop', mode: 'loop', trigger: '/loop' }, { deadlineMs: 100 }),
      ]);
      const looping = chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/loop') });
      const others = Array.from({ length: 40 }, (_, i) => chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request(`/ok/${i}`) }));
      const [stuck, ...fine] = await Promise.all([looping, ...others]);
      expect(stuck.action).toBe('respond');
      if (stuck.action === 'respond') {
        expect(stuck.response.status).toBe(503);
        // The client learns which filter and what kind of failure; the reason is the operator's.
        expect(stuck.response.body).toBe('filter misbehave-loop failed (deadline)\n');
        expect(stuck.filter).toBe('misbehave-loop');
      }
      expect(stuck.failures).toMatchObject([{ filter: 'misbehave-loop', kind: 'deadline', policy: 'fail-closed' }]);
      expect(stuck.failures[0]?.message).toContain('100 ms deadline');
      expect(fine.every((o) => o.action === 'continue')).toBe(true);
      // The engine keeps serving afterwards.
      const after = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/after') });
      expect(header(opsHeaders(after), 'x-chain')).toEqual(['a', 'loop']);
      expect(engine.stats().get('misbehave-loop')?.deadlines).toBeGreaterThanOrEqual(1);
      await chain.close();
    });

    it('fail-open skips a looping filter and keeps the changes made before it', async () => {
      const chain = await engine.createChain([
        mis({ tag: 'a' }),
        mis({ tag: 'spin', mode: 'loop', trigger: '/loop' }, { deadlineMs: 80, failurePolicy: 'fail-open' }),
        mis({ tag: 'c' }),
      ]);
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/loop') });
      expect(out.failures).toMatchObject([{ filter: 'misbehave-spin', kind: 'deadline', policy: 'fail-open' }]);
      expect(header(opsHeaders(out), 'x-chain')).toEqual(['a', 'c']);
      expect(header(opsHeaders(out), 'x-seen-c')).toEqual(['a']);
      await chain.close();
    });

    it('traps an allocation bomb at the memory cap; only that call fails and the instance is replaced', async () => {
      const chain = await engine.createChain([mis({ tag: 'bomb', mode: 'bomb', trigger: '/bomb' }, { memoryMaxPages: 256 })]);
      const [boom, ok] = await Promise.all([
        chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/bomb') }),
        chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/fine') }),
      ]);
      expect(boom.action).toBe('respond');
      if (boom.action === 'respond') expect(boom.response.status).toBe(503);
      expect(boom.failures).toMatchObject([{ filter: 'misbehave-bomb', kind: 'trap' }]);
      expect(ok.action).toBe('continue');
      const again = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/fine-again') });
      expect(header(opsHeaders(again), 'x-chain')).toEqual(['bomb']);
      await chain.close();
    });

    it('treats a throwing filter as a trap: fail-closed answers 503, fail-open continues', async () => {
      const closed = await engine.createChain([mis({ tag: 't', mode: 'throw', trigger: '/throw' })]);
      const c = await closed.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/throw') });
      expect(c).toMatchObject({ action: 'respond', response: { status: 503 }, filter: 'misbehave-t' });
      expect(c.failures[0]?.kind).toBe('trap');
      expect(c.failures[0]?.message).toContain('Error: misbehave t throws on purpose');
      // The exception text stays out of the client's reply (a binding opts in with exposeErrors).
      expect(c.action === 'respond' && c.response.body).toBe('filter misbehave-t failed (trap)\n');
      expect((await closed.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/') })).action).toBe('continue');
      const open = await engine.createChain([mis({ tag: 't', mode: 'throw', trigger: '/throw' }, { failurePolicy: 'fail-open' }), mis({ tag: 'after' })]);
      const o = await open.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/throw') });
      expect(header(opsHeaders(o), 'x-chain')).toEqual(['after']);
      await closed.close();
      await open.close();
    });

    it('traps a call to a capability the filter did not declare', async () => {
      const chain = await engine.createChain([mis({ tag: 'cap', mode: 'undeclared-capability', trigger: '/cap' })]);
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/cap') });
      expect(out.action).toBe('respond');
      expect(out.failures[0]?.kind).toBe('trap');
      await chain.close();
    });

    it('rejects a config the filter refuses, and a config that fails the schema, naming the JSON path', async () => {
      await expect(engine.createChain([mis({ tag: 'no', mode: 'reject-config' })])).rejects.toMatchObject({
        code: 'AMBIT_ERR_CONFIG_REJECTED',
        message: expect.stringContaining('this config is refused on purpose'),
      });
      expect(() => bindingFromArtifact(fx.hello, { config: { maxAttempts: 0, retryOn: ['x'] } })).toThrowError(
        expect.objectContaining({ code: 'AMBIT_ERR_CONFIG_INVALID', message: expect.stringMatching(/\/retryOn\/0: must be integer; \/maxAttempts: must be >= 1/) }),
      );
    });

    it('refuses what is not a filter component, and keeps serving', async () => {
      const live = await engine.createChain([mis({ tag: 'live' })]);
      const base = { name: 'bad', sha256: 'x', capabilities: ['log' as const], config: {} };
      const notWasm = new TextEncoder().encode('#!/bin/sh\necho not wasm\n');
      await expect(engine.createChain([{ ...base, wasm: notWasm }])).rejects.toMatchObject({ code: 'AMBIT_ERR_NOT_WASM' });
      const core = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
      await expect(engine.createChain([{ ...base, wasm: core }])).rejects.toMatchObject({ code: 'AMBIT_ERR_NOT_COMPONENT', message: expect.stringContaining('core WebAssembly module') });
      const truncated = fx.misbehave.wasm.slice(0, 4096);
      await expect(engine.createChain([{ ...base, wasm: truncated }])).rejects.toMatchObject({ code: 'AMBIT_ERR_NOT_COMPONENT' });
      const other = await wrongWorldComponent();
      await expect(engine.createChain([{ ...base, wasm: other }])).rejects.toMatchObject({ code: 'AMBIT_ERR_WRONG_WORLD', message: expect.stringContaining('ambit:filter/handler') });
      // A filter as the 0.1 SDK built it (the hello example, kept as a benchmark fixture): refused, naming the SDK to rebuild with.
      const v01 = new Uint8Array(await readFile(path.join(REPO, 'bench/fixtures/hello-0.1/filter.wasm')));
      await expect(engine.createChain([{ ...base, wasm: v01 }])).rejects.toMatchObject({ code: 'AMBIT_ERR_WRONG_WORLD', message: expect.stringMatching(/0\.1.*rebuild it with @ambit\/filter-sdk 0\.2/) });
      await expect(engine.createChain([mis({ tag: 'tiny' }, { memoryMaxPages: 4 })])).rejects.toMatchObject({ code: 'AMBIT_ERR_MEMORY_CAP' });
      expect(header(opsHeaders(await live.run({ phase: 'requestHeaders', ctx: ctx(), request: request() })), 'x-chain')).toEqual(['live']);
      await live.close();
    });

    it('lets in-flight calls finish on a chain being replaced', async () => {
      const oldChain = await engine.createChain([mis({ tag: 'old' })]);
      const inflight = Array.from({ length: 20 }, () => oldChain.run({ phase: 'requestHeaders', ctx: ctx(), request: request() }));
      const newChain = await engine.createChain([mis({ tag: 'new' })]);
      const closing = oldChain.close();
      const results = await Promise.all(inflight);
      await closing;
      expect(results.every((r) => header(opsHeaders(r), 'x-chain')[0] === 'old')).toBe(true);
      expect(() => oldChain.run({ phase: 'requestHeaders', ctx: ctx(), request: request() })).toThrowError(AmbitError);
      expect(header(opsHeaders(await newChain.run({ phase: 'requestHeaders', ctx: ctx(), request: request() })), 'x-chain')).toEqual(['new']);
      await newChain.close();
    });

    describe('host functions beyond headers (shared storage, directives, attempt facts)', () => {
      const builtin = async (name: 'ratelimit' | 'fault' | 'traffic-split' | 'retry', config: unknown, as?: string): Promise<FilterBinding> =>
        // A generous deadline: these cases are about results, and a loaded machine can stall a thread.
        bindingFromArtifact(await loadFilterArtifact(builtinDir(name)), { config, name: as, deadlineMs: 5_000 });
      beforeAll(async () => { await buildBuiltinFilters(); });

      it('shares a binding\'s storage across every instance and thread, and across chains of the same binding name', async () => {
        const limit = { maxTokens: 10, tokensPerFill: 1, fillIntervalMs: 600_000 };
        const chain = await engine.createChain([await builtin('ratelimit', limit, 'conformance-limit')]);
        const outs = await Promise.all(Array.from({ length: 30 }, () => chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request() })));
        expect(outs.filter((o) => o.action === 'continue')).toHaveLength(10);
        expect(outs.filter((o) => o.action === 'respond' && o.response.status === 429)).toHaveLength(20);
        // A new chain of the same binding (a reload) sees the same buckets; another name has its own.
        const again = await engine.createChain([await builtin('ratelimit', limit, 'conformance-limit')]);
        expect((await again.run({ phase: 'requestHeaders', ctx: ctx(), request: request() })).action).toBe('respond');
        const other = await engine.createChain([await builtin('ratelimit', limit, 'conformance-limit-2')]);
        expect((await other.run({ phase: 'requestHeaders', ctx: ctx(), request: request() })).action).toBe('continue');
        await Promise.all([chain.close(), again.close(), other.close()]);
      });

      it('returns the request phase\'s directives: delays add up, the last subset and per-try timeout win', async () => {
        const chain = await engine.createChain([
          await builtin('fault', { delay: { percentage: 100, fixedDelayMs: 40 } }, 'delay-a'),
          await builtin('fault', { delay: { percentage: 100, fixedDelayMs: 2 } }, 'delay-b'),
          await builtin('traffic-split', { subsets: [{ name: 'v1', weight: 1 }] }, 'split-a'),
          await builtin('traffic-split', { subsets: [{ name: 'v2', weight: 1 }] }, 'split-b'),
          await builtin('retry', { perTryTimeoutMs: 250 }),
        ]);
        const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request() });
        expect(out).toMatchObject({ action: 'continue', directives: { delayMs: 42, subset: 'v2', perTryTimeoutMs: 250 } });
        await chain.close();
      });

      it('answers upstream-error from the attempt\'s facts, reads live load, and counts a first retry in it', async () => {
        const chain = await engine.createChain([await builtin('retry', { retryOn: ['reset'], attempts: 3, budget: { percent: 50, minRetryConcurrency: 1 } })]);
        const load = new Int32Array(new SharedArrayBuffer(8));
        load[0] = 4;
        const response: ResponseHead = { status: 503, headers: [['x-ambit-upstream-error', 'reset']] };
        const run = (attempt: number, upstreamError?: string) =>
          chain.run({ phase: 'responseHeaders', ctx: ctx({ attempt }), request: request(), response: { ...response, headers: response.headers.slice() }, facts: { upstreamError }, load });
        // A forged header alone is not a reset.
        expect((await run(1)).action).toBe('continue');
        expect(load[1]).toBe(0);
        expect((await run(1, 'reset')).action).toBe('retry');
        expect(load[1]).toBe(1);
        // A later attempt's retry is the same request: not counted again.
        expect((await run(2, 'reset')).action).toBe('retry');
        expect(load[1]).toBe(1);
        // 50% of 4 in flight = 2 retries: a second request may retry, a third may not.
        expect((await run(1, 'reset')).action).toBe('retry');
        expect(load[1]).toBe(2);
        expect((await run(1, 'reset')).action).toBe('continue');
        expect(load[1]).toBe(2);
        await chain.close();
      });
    });

    it('uses the component bytes it was given (sha256 in chain info)', async () => {
      const chain = await engine.createChain([mis({ tag: 'sha' })]);
      const manifest = JSON.parse(await readFile(fx.misbehave.origin.replace(/filter\.wasm$/, 'manifest.json'), 'utf8')) as { sha256: string };
      expect(chain.filters[0]!.sha256).toBe(manifest.sha256);
      await chain.close();
    });
  });
}
