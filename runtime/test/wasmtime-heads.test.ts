/**
 * The wasmtime host side of `ambit:filter@0.2`: the context and heads lent to a filter
 * as resources, read on demand and changed in place (the next filter sees the change),
 * the changes reported as header operations, a failed call taken back, the forwarded
 * request read-only in the response phase, a filter's output validated before it can
 * reach the wire, and 0.1 components refused at load. The guest is a real component of
 * the SDK's WIT built by componentize-qjs from the JavaScript below.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { componentize } from 'componentize-qjs';
import { loadNative, WasmtimeEngine, type FilterBinding, type PhaseOutcome } from '@ambit/runtime';
import { ctx, request } from './conformance.js';
import { oldWorldComponent, wrongWorldComponent } from './wrong-world.js';

const native = loadNative();
const hasCargo = !spawnSync('cargo', ['--version'], { stdio: 'ignore' }).error;
const skip = !native.ok && !hasCargo ? `the wasmtime addon is not built here and cargo is missing (${native.reason})` : undefined;
const WIT_DIR = fileURLToPath(new URL('../../sdk/wit/', import.meta.url));

/** A filter written straight against the WIT bindings: what it does depends on its role and the request path. */
const GUEST = String.raw`
let role = 'probe';
const proceed = { tag: 'proceed' };
export const handler = {
  configure(config) {
    role = JSON.parse(config).role ?? 'probe';
    return { tag: 'ok', val: { name: 'heads-' + role, phases: { connection: true, requestHeaders: true, responseHeaders: true } } };
  },
  onConnection(ctx) {
    const tls = ctx.tls();
    if (tls && tls.sni === 'long.test') return { tag: 'deny', val: 'r'.repeat(1025) };
    return tls && tls.sni === 'deny.test' ? { tag: 'deny', val: 'sni ' + tls.sni + ' from ' + ctx.source().address } : { tag: 'allow' };
  },
  onRequestHeaders(ctx, req) {
    if (role === 'writer') { req.set('x-from-writer', req.get('X-Input') ?? 'none'); return proceed; }
    if (role === 'reader') { req.set('x-reader-saw', req.get('x-from-writer') ?? 'nothing'); return proceed; }
    if (role === 'half') { req.set('x-half', '1'); req.setPath('/half'); req.set('bad name', 'v'); return proceed; }
    const path = req.path();
    switch (path) {
      case '/read': {
        const src = ctx.source();
        req.set('x-seen', JSON.stringify({
          method: req.method(), scheme: req.scheme(), authority: req.authority(), path,
          mixed: req.get('X-MIXED'), all: req.getAll('x-multi'), has: req.has('X-Multi'), missing: req.get('x-none'),
          size: req.size(), entries: req.entries(), direction: ctx.direction(), source: src.address, identity: src.identity,
          service: ctx.service(), route: ctx.route(), requestId: ctx.requestId(), attempt: ctx.attempt(), tls: ctx.tls(),
        }));
        return proceed;
      }
      case '/write':
        req.set('X-Set', 'one'); req.append('x-app', 'a'); req.append('x-app', 'b'); req.remove('x-drop');
        req.setPath('/rewritten?q=1'); req.setMethod('POST'); req.setAuthority('other.default:8080');
        req.set('x-after', req.path() + ' ' + req.get('x-set') + ' ' + req.has('x-drop'));
        return proceed;
      case '/bad-name': req.set('bad name', 'v'); return proceed;
      case '/bad-value': req.append('x-evil', 'a\r\nset-cookie: x=1'); return proceed;
      case '/bad-path': req.setPath('no-slash'); return proceed;
      case '/many': for (let i = 0; i < 101; i++) req.append('x-' + i, 'v'); return proceed;
      case '/respond': return { tag: 'respond', val: { status: 403, headers: [['Content-Type', 'text/plain']], body: 'no' } };
      case '/respond-bad-status': return { tag: 'respond', val: { status: 99, headers: [], body: '' } };
      case '/respond-bad-header': return { tag: 'respond', val: { status: 403, headers: [['x-a', 'line\nbreak']], body: '' } };
      case '/respond-big': return { tag: 'respond', val: { status: 200, headers: [], body: 'x'.repeat(1024 * 1024 + 1) } };
    }
    return proceed;
  },
  onResponseHeaders(ctx, req, res) {
    switch (req.path()) {
      case '/mutate-request': req.set('x-late', '1'); return proceed;
      case '/bad-status': res.setStatus(700); return proceed;
    }
    res.set('x-upstream-server', res.get('Server') ?? 'none');
    res.set('x-request', req.path() + ' ' + req.get('x-input'));
    res.setStatus(res.status() === 503 ? 502 : 201);
    res.remove('server');
    if (req.path() === '/retry') return { tag: 'retry', val: { delayMs: 5, reason: 'attempt ' + ctx.attempt() } };
    return proceed;
  },
};
`;

function sha(wasm: Uint8Array): string {
  return createHash('sha256').update(wasm).digest('hex');
}

function binding(wasm: Uint8Array, role: string, extra: Partial<FilterBinding> = {}): FilterBinding {
  return { name: `heads-${role}`, wasm, sha256: sha(wasm), capabilities: [], config: { role }, ...extra };
}

function ops(o: PhaseOutcome): unknown[] {
  if (o.action !== 'continue') throw new Error(`expected continue, got ${JSON.stringify(o)}`);
  return o.ops;
}

function set(o: PhaseOutcome, name: string): string | undefined {
  const op = ops(o).filter((x): x is { tag: 'set'; val: [string, string] } => (x as { tag: string }).tag === 'set' && (x as { val: [string, string] }).val[0] === name).at(-1);
  return op?.val[1];
}

describe.skipIf(skip !== undefined)(`wasmtime host of ambit:filter@0.2${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let guest: Uint8Array;
  let engine: WasmtimeEngine;

  beforeAll(async () => {
    const { component } = await componentize({ witPath: WIT_DIR, world: 'filter', jsSource: GUEST, sync: true, stubWasi: true });
    guest = new Uint8Array(component);
    engine = new WasmtimeEngine({ threads: 1, cacheDir: false, onLog: () => {} });
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('reads the context and the request head on demand; names come lower-case and lookups ignore case', async () => {
    const chain = await engine.createChain([binding(guest, 'probe')]);
    const tls = { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: 'api.test' };
    const input = request('/read', [['X-Mixed', 'M'], ['x-multi', '1'], ['x-multi', '2']]);
    const out = await chain.run({ phase: 'requestHeaders', ctx: { ...ctx({ requestId: 'r-42', attempt: 2 }), tls } as ReturnType<typeof ctx>, request: input });
    expect(JSON.parse(set(out, 'x-seen')!)).toEqual({
      method: 'GET', scheme: 'http', authority: 'api.default', path: '/read',
      mixed: 'M', all: ['1', '2'], has: true, missing: null, size: 3,
      entries: [['x-mixed', 'M'], ['x-multi', '1'], ['x-multi', '2']],
      direction: 'inbound', source: '10.1.0.5', identity: 'spiffe://mesh.test/ns/default/sa/web',
      service: 'api.default', route: 'api', requestId: 'r-42', attempt: 2, tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: 'api.test' },
    });
    await chain.close();
  });

  it('changes the request in place and reports each change as a header operation, fields as pseudo-headers', async () => {
    for (const instances of ['pooled', 'per-request'] as const) {
      const chain = await engine.createChain([binding(guest, 'probe', { instances })]);
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/write', [['x-drop', '1'], ['x-set', 'old']]) });
      expect(ops(out)).toEqual([
        { tag: 'set', val: ['x-set', 'one'] },
        { tag: 'append', val: ['x-app', 'a'] },
        { tag: 'append', val: ['x-app', 'b'] },
        { tag: 'remove', val: 'x-drop' },
        { tag: 'set', val: [':path', '/rewritten?q=1'] },
        { tag: 'set', val: [':method', 'POST'] },
        { tag: 'set', val: [':authority', 'other.default:8080'] },
        // The filter read its own changes back.
        { tag: 'set', val: ['x-after', '/rewritten?q=1 one false'] },
      ]);
      await chain.close();
    }
  });

  it('lends each filter the head as the filters before it left it', async () => {
    const chain = await engine.createChain([binding(guest, 'writer'), binding(guest, 'reader')]);
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/', [['x-input', 'from-client']]) });
    expect(set(out, 'x-from-writer')).toBe('from-client');
    expect(set(out, 'x-reader-saw')).toBe('from-client');
    await chain.close();
  });

  it('takes back the changes of a call that fails: a fail-open failure leaves the next filter the head as it was', async () => {
    const chain = await engine.createChain([binding(guest, 'half', { failurePolicy: 'fail-open' }), binding(guest, 'probe')]);
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/read', [['x-multi', '1']]) });
    expect(out.failures).toMatchObject([{ filter: 'heads-half', kind: 'trap', policy: 'fail-open' }]);
    const seen = JSON.parse(set(out, 'x-seen')!) as { path: string; entries: unknown[] };
    expect(seen.path).toBe('/read');
    expect(seen.entries).toEqual([['x-multi', '1']]);
    expect(ops(out)).toHaveLength(1);
    await chain.close();
  });

  it('refuses output that must not reach the wire: the call fails with what was wrong, under the failure policy', async () => {
    const chain = await engine.createChain([binding(guest, 'probe')]);
    const cases: Array<[string, string]> = [
      ['/bad-name', 'AMBIT_ERR_FILTER_OUTPUT: filter heads-probe used the header name "bad name", which is not a valid HTTP field name'],
      ['/bad-value', 'filter heads-probe set the header x-evil to "a\\r\\nset-cookie: x=1", which is not a valid HTTP field value'],
      ['/bad-path', 'set the path to "no-slash"; a path starts with "/"'],
      ['/many', 'added more than 100 headers or 65536 bytes of headers in one call'],
      ['/respond-bad-status', 'answered with status 99; a local response is 200–599'],
      ['/respond-bad-header', 'set the header x-a to "line\\nbreak", which is not a valid HTTP field value'],
      ['/respond-big', 'answered with a body of 1048577 bytes, above the limit of 1048576'],
    ];
    for (const [path, message] of cases) {
      const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request(path) });
      expect(out.failures, path).toMatchObject([{ filter: 'heads-probe', kind: 'trap', policy: 'fail-closed' }]);
      expect(out.failures[0]!.message, path).toContain(message);
      // Fail-closed: the client gets the policy's answer.
      expect(out.action, path).toBe('respond');
    }
    const ok = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/respond') });
    expect(ok).toMatchObject({ action: 'respond', response: { status: 403, headers: [['content-type', 'text/plain']], body: 'no' }, failures: [] });
    await chain.close();
  });

  it('lends the forwarded request read-only in the response phase, and the response writable', async () => {
    const chain = await engine.createChain([binding(guest, 'probe')]);
    const response = { status: 200, headers: [['Server', 'up'], ['x-other', '1']] as Array<[string, string]> };
    const out = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/page', [['x-input', 'q']]), response });
    expect(ops(out)).toEqual([
      { tag: 'set', val: ['x-upstream-server', 'up'] },
      { tag: 'set', val: ['x-request', '/page q'] },
      { tag: 'set', val: [':status', '201'] },
      { tag: 'remove', val: 'server' },
    ]);
    const late = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/mutate-request'), response });
    expect(late.failures[0]!.message).toContain('AMBIT_ERR_HOST_CALL: filter heads-probe tried to change the request in onResponse (set): the forwarded request is read-only in the response phase');
    const status = await chain.run({ phase: 'responseHeaders', ctx: ctx(), request: request('/bad-status'), response });
    expect(status.failures[0]!.message).toContain('AMBIT_ERR_FILTER_OUTPUT: filter heads-probe set the status 700; an HTTP status is 100–599');
    const retry = await chain.run({ phase: 'responseHeaders', ctx: ctx({ attempt: 1 }), request: request('/retry'), response });
    expect(retry).toMatchObject({ action: 'retry', retry: { delayMs: 5, reason: 'attempt 1' }, failures: [] });
    await chain.close();
  });

  it('lends the context in the connection phase, with its TLS facts', async () => {
    const chain = await engine.createChain([binding(guest, 'probe')]);
    const conn = (sni: string) => ({ context: ctx(), tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni } });
    expect(await chain.run({ phase: 'connection', conn: conn('deny.test') })).toMatchObject({ action: 'deny', reason: 'sni deny.test from 10.1.0.5' });
    expect(await chain.run({ phase: 'connection', conn: conn('ok.test') })).toMatchObject({ action: 'continue', failures: [] });
    const long = await chain.run({ phase: 'connection', conn: conn('long.test') });
    expect(long).toMatchObject({ action: 'deny', failures: [{ filter: 'heads-probe', kind: 'trap', policy: 'fail-closed' }] });
    expect(long.failures[0]!.message).toContain('gave a deny reason of 1025 bytes, above the limit of 1024');
    await chain.close();
  });

  it('runs a phase in-thread for benchmarks and says what it ran', async () => {
    const chain = await engine.createChain([binding(guest, 'writer'), binding(guest, 'reader')]);
    const bench = engine.benchPhase(chain, { phase: 'requestHeaders', ctx: ctx(), request: request('/', [['x-input', 'v']]) }, 50);
    expect(bench.iterations).toBe(50);
    expect(bench.phaseUs.p50).toBeGreaterThan(0);
    expect(bench.phaseUs.p99).toBeGreaterThanOrEqual(bench.phaseUs.p50);
    // Every run starts from the same input: the last one made the same two changes.
    expect(bench.outcome).toMatchObject({ action: 'continue', ops: [{ tag: 'set', val: ['x-from-writer', 'v'] }, { tag: 'set', val: ['x-reader-saw', 'v'] }], failures: [] });
    await chain.close();
  });

  it('refuses a 0.1 component at load, naming the SDK to rebuild with', async () => {
    const old = await oldWorldComponent();
    await expect(engine.createChain([{ ...binding(old, 'old') }])).rejects.toMatchObject({
      code: 'AMBIT_ERR_WRONG_WORLD',
      message: expect.stringContaining(
        'filter heads-old was built for ambit:filter@0.1.x (it exports ambit:filter/handler@0.1.0); this host runs ambit:filter@0.2.x filters: rebuild it with @ambit/filter-sdk 0.2 (npx ambit-filter build)',
      ),
    });
    const other = await wrongWorldComponent();
    await expect(engine.createChain([{ ...binding(other, 'other') }])).rejects.toMatchObject({
      code: 'AMBIT_ERR_WRONG_WORLD',
      message: expect.stringContaining('but not ambit:filter/handler@0.2.x'),
    });
  });
});
