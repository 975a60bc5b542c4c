/**
 * `@ambit/filter-sdk/testing`: the in-process harness, on the built hello example
 * and on a filter that uses a capability it did not declare.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmbitError } from '@ambit/filter-sdk/host';
import { FilterTrapError, loadFilter, type TestFilter } from '@ambit/filter-sdk/testing';
import { buildWithCli, copyHello, makeTempRoot, rejection, thrown, useCacheIn, writeFilterPackage } from './helpers.js';

let root: string;
let cleanup: () => Promise<void>;
let restoreCache: () => void;
let helloDir: string;
let capDir: string;
let edgeDir: string;

const IDENTITY = 'spiffe://mesh.test/ns/default/sa/web';

beforeAll(async () => {
  ({ root, cleanup } = await makeTempRoot('testing'));
  restoreCache = useCacheIn(root);
  helloDir = await copyHello(path.join(root, 'hello'));
  // Declares only `log`, then reads the clock on `/time`; counts its calls so a
  // fresh instance is visible.
  capDir = await writeFilterPackage(path.join(root, 'cap'), [
    "import { clock, defineFilter, log } from '@ambit/filter-sdk';",
    '',
    'let calls = 0;',
    '',
    'export default defineFilter({',
    "  name: 'cap',",
    "  capabilities: ['log'],",
    '  onRequest(req) {',
    '    calls += 1;',
    "    // Through an array, past the build's capability check: the host's refusal is tested.",
    "    if (req.path === '/time') req.headers.set('x-time', String([clock][0]!.now()));",
    '    log.info(`call ${calls}`);',
    "    req.headers.set('x-calls', String(calls));",
    '  },',
    '});',
    '',
  ].join('\n'));
  // Rewrites pseudo-headers, edits header lists, changes the status, and throws on `/boom`.
  edgeDir = await writeFilterPackage(path.join(root, 'edge'), [
    "import { defineFilter, respond } from '@ambit/filter-sdk';",
    '',
    'let calls = 0;',
    '',
    'export default defineFilter({',
    '  onRequest(req) {',
    '    calls += 1;',
    "    if (req.path === '/boom') throw new Error('edge exploded');",
    "    if (req.path === '/teapot') return respond(418, 'short and stout', [['x-a', '1'], ['X-B', '2']]);",
    "    req.path = `/v2${req.path}`;",
    "    req.method = 'PUT';",
    "    req.authority = 'backend.internal';",
    "    req.headers.append('x-tag', 'edge');",
    "    req.headers.delete('cookie');",
    "    req.headers.set('x-calls', String(calls));",
    "    req.headers.set('x-seen-tags', req.headers.getAll('x-tag').join(','));",
    '  },',
    '  onResponse(res, ctx) {',
    "    if (res.status === 404) res.status = 410;",
    "    res.headers.set('x-request-path', ctx.request.path);",
    '  },',
    '});',
    '',
  ].join('\n'));
  await Promise.all([buildWithCli(helloDir), buildWithCli(capDir), buildWithCli(edgeDir)]);
});
afterAll(async () => {
  restoreCache?.();
  await cleanup?.();
});

describe('harness on the hello example (default config)', () => {
  let f: TestFilter;
  beforeAll(async () => {
    f = await loadFilter(helloDir);
  });

  it('reports the filter name, manifest and phases', () => {
    expect(f.name).toBe('hello');
    expect(f.manifest?.engine).toBe('quickjs');
    expect(f.manifest?.capabilities).toEqual(['log', 'counters']);
    expect(f.phases).toEqual({ connection: true, requestHeaders: true, responseHeaders: true, requestBody: false, responseBody: false });
  });

  it('continues a request with the greeting header set, as ops and on the request', () => {
    const r = f.request(
      { method: 'POST', path: '/api/items?x=1', authority: 'api.default', headers: { accept: 'application/json', 'X-Ambit-Hello': 'spoofed' } },
      { source: { workload: 'web', address: '10.1.0.5' } },
    );
    expect(r.action).toBe('continue');
    if (r.action !== 'continue') return;
    expect(r.ops).toEqual([{ tag: 'set', val: ['x-ambit-hello', 'hello from web'] }]);
    expect(r.request).toEqual({
      method: 'POST',
      scheme: 'http',
      authority: 'api.default',
      path: '/api/items?x=1',
      // `set` replaced the spoofed value (input names are lower-cased).
      headers: [['accept', 'application/json'], ['x-ambit-hello', 'hello from web']],
    });
  });

  it('falls back to the source address when the workload is unknown', () => {
    const r = f.request({ path: '/' }, { source: { address: '192.0.2.7' } });
    expect(r.action === 'continue' && r.request.headers).toEqual([['x-ambit-hello', 'hello from 192.0.2.7']]);
  });

  it('answers 403 for /admin, with a body and content-type, and logs and counts it', () => {
    const logsBefore = f.logs.length;
    const deniedBefore = f.counters.get('denied') ?? 0;
    const r = f.request({ method: 'DELETE', path: '/admin/users/1' }, { source: { identity: IDENTITY } });
    expect(r).toEqual({
      action: 'respond',
      response: { status: 403, headers: [['content-type', 'text/plain']], body: 'forbidden by policy hello: /admin is denied\n' },
    });
    expect(f.logs.slice(logsBefore)).toEqual([{ level: 'info', message: `denied DELETE /admin/users/1 from ${IDENTITY}` }]);
    expect(f.counters.get('denied')).toBe(deniedBefore + 1);
  });

  it('retries a 503 while attempt < maxAttempts, counting retries', () => {
    const before = f.counters.get('retries') ?? 0;
    for (const attempt of [1, 2]) {
      const r = f.response({ status: 503 }, { path: '/flaky' }, { attempt });
      expect(r).toEqual({ action: 'retry', delayMs: 0, reason: 'upstream answered 503' });
    }
    expect(f.counters.get('retries')).toBe(before + 2);
  });

  it('does not retry on the last attempt and reports the attempt count', () => {
    const before = f.counters.get('retries') ?? 0;
    const r = f.response({ status: 503, headers: { 'content-type': 'text/html' } }, { path: '/flaky' }, { attempt: 3 });
    expect(r.action).toBe('continue');
    if (r.action !== 'continue') return;
    expect(r.ops).toEqual([{ tag: 'set', val: ['x-ambit-attempts', '3'] }]);
    expect(r.response).toEqual({ status: 503, headers: [['content-type', 'text/html'], ['x-ambit-attempts', '3']] });
    expect(f.counters.get('retries') ?? 0).toBe(before);
  });

  it('passes statuses it does not retry on, with x-ambit-attempts', () => {
    const r = f.response({ status: 500 }, {}, { attempt: 1 });
    expect(r.action === 'continue' && r.response).toEqual({ status: 500, headers: [['x-ambit-attempts', '1']] });
  });

  it('allows a connection without identity when requireIdentity is off', () => {
    expect(f.connection({ source: { address: '10.9.9.9' } })).toEqual({ action: 'allow' });
  });

  it('records logs and counters across calls', () => {
    expect(f.logs.length).toBeGreaterThan(0);
    expect(f.logs.every((l) => l.level === 'info' && l.message.startsWith('denied '))).toBe(true);
    expect([...f.counters.keys()].sort()).toEqual(['denied', 'retries']);
  });
});

describe('harness on the hello example (configured)', () => {
  it('denies a connection without an mTLS identity when requireIdentity is set', async () => {
    const f = await loadFilter(helloDir, { config: { requireIdentity: true } });
    expect(f.connection({ source: { address: '10.1.0.5' } })).toEqual({ action: 'deny', reason: 'hello: 10.1.0.5 has no mTLS identity' });
  });

  it('allows a connection with an identity when requireIdentity is set', async () => {
    const f = await loadFilter(helloDir, { config: { requireIdentity: true } });
    expect(f.connection({ source: { address: '10.1.0.5', identity: IDENTITY }, tls: { sni: 'api.default' } })).toEqual({ action: 'allow' });
  });

  it('uses the configured header, path prefixes, statuses and attempts', async () => {
    const f = await loadFilter(helloDir, { config: { header: 'x-greeting', denyPathPrefixes: ['/internal'], retryOn: [502], maxAttempts: 2 } });
    const ok = f.request({ path: '/admin' }, { source: { workload: 'web' } });
    expect(ok.action === 'continue' && ok.ops).toEqual([{ tag: 'set', val: ['x-greeting', 'hello from web'] }]);
    expect(f.request({ path: '/internal/metrics' }).action).toBe('respond');
    expect(f.response({ status: 503 }, {}, { attempt: 1 }).action).toBe('continue');
    expect(f.response({ status: 502 }, {}, { attempt: 1 }).action).toBe('retry');
    expect(f.response({ status: 502 }, {}, { attempt: 2 }).action).toBe('continue');
  });

  it('applies schema defaults to a partial config', async () => {
    // Only maxAttempts given: header, denyPathPrefixes and retryOn come from the schema.
    const f = await loadFilter(helloDir, { config: { maxAttempts: 2 } });
    const r = f.request({ path: '/x' }, { source: { workload: 'web' } });
    expect(r.action === 'continue' && r.ops).toEqual([{ tag: 'set', val: ['x-ambit-hello', 'hello from web'] }]);
    expect(f.request({ path: '/admin' }).action).toBe('respond');
    expect(f.response({ status: 503 }, {}, { attempt: 1 }).action).toBe('retry');
    expect(f.response({ status: 503 }, {}, { attempt: 2 }).action).toBe('continue');
    expect(f.connection({}).action).toBe('allow');
  });

  it('does not change the caller\'s config object when filling in defaults', async () => {
    const config = { maxAttempts: 2 };
    await loadFilter(helloDir, { config });
    expect(config).toEqual({ maxAttempts: 2 });
  });

  it('rejects an invalid config naming the JSON path', async () => {
    const e = await rejection(loadFilter(helloDir, { config: { maxAttempts: 0 } }));
    expect(e).toBeInstanceOf(AmbitError);
    expect((e as AmbitError).code).toBe('AMBIT_ERR_CONFIG_INVALID');
    expect((e as AmbitError).message).toContain('/maxAttempts: must be >= 1');
  });

  it('names every invalid path, including nested ones', async () => {
    const e = await rejection(loadFilter(helloDir, { config: { header: 'Not Valid', retryOn: [503, 404] } }));
    expect((e as AmbitError).code).toBe('AMBIT_ERR_CONFIG_INVALID');
    expect((e as AmbitError).message).toContain('/header: must match pattern');
    expect((e as AmbitError).message).toContain('/retryOn/1: must be >= 500');
  });

  it('rejects an unknown property (additionalProperties: false)', async () => {
    const e = await rejection(loadFilter(helloDir, { config: { maxAttempt: 2 } }));
    expect((e as AmbitError).code).toBe('AMBIT_ERR_CONFIG_INVALID');
    expect((e as AmbitError).message).toMatch(/must NOT have additional properties \(maxAttempt\)/);
  });
});

describe('harness: a capability the filter did not declare', () => {
  it('traps the call with a message naming the capability, then works again on a fresh instance', async () => {
    const f = await loadFilter(capDir);
    expect(f.manifest?.capabilities).toEqual(['log']);

    const first = f.request({ path: '/a' });
    const second = f.request({ path: '/a' });
    expect(first.action === 'continue' && first.request.headers).toEqual([['x-calls', '1']]);
    expect(second.action === 'continue' && second.request.headers).toEqual([['x-calls', '2']]);

    const e = thrown(() => f.request({ path: '/time' }));
    expect(e).toBeInstanceOf(FilterTrapError);
    expect((e as Error).message).toContain('filter cap trapped in onRequest');
    expect((e as Error).message).toContain('used the "clock" capability without declaring it');
    expect(((e as Error).cause as AmbitError).code).toBe('AMBIT_ERR_CAPABILITY');

    // The next call runs on a fresh instance: module state starts over.
    const after = f.request({ path: '/a' });
    expect(after.action === 'continue' && after.request.headers).toEqual([['x-calls', '1']]);
    expect(f.logs.map((l) => l.message)).toEqual(['call 1', 'call 2', 'call 1']);
  });

  it('traps the same way on every undeclared use, each time with a fresh instance', async () => {
    const f = await loadFilter(capDir);
    for (let i = 0; i < 3; i++) {
      expect(() => f.request({ path: '/time' })).toThrow(FilterTrapError);
      const r = f.request({ path: '/a' });
      expect(r.action === 'continue' && r.request.headers).toEqual([['x-calls', '1']]);
    }
  });
});

describe('harness: request and response edits, and a filter that throws', () => {
  let f: TestFilter;
  beforeAll(async () => {
    f = await loadFilter(edgeDir);
  });

  it('applies :path, :method and :authority rewrites and header edits to the returned request', () => {
    const r = f.request({ method: 'GET', path: '/items?q=1', authority: 'api.default', headers: [['Cookie', 'a=1'], ['x-tag', 'client'], ['cookie', 'b=2']] });
    expect(r.action).toBe('continue');
    if (r.action !== 'continue') return;
    expect(r.ops).toEqual([
      { tag: 'set', val: [':path', '/v2/items?q=1'] },
      { tag: 'set', val: [':method', 'PUT'] },
      { tag: 'set', val: [':authority', 'backend.internal'] },
      { tag: 'append', val: ['x-tag', 'edge'] },
      { tag: 'remove', val: 'cookie' },
      { tag: 'set', val: ['x-calls', '1'] },
      // The filter reads its own edits back.
      { tag: 'set', val: ['x-seen-tags', 'client,edge'] },
    ]);
    expect(r.request).toEqual({
      method: 'PUT',
      scheme: 'http',
      authority: 'backend.internal',
      path: '/v2/items?q=1',
      headers: [['x-tag', 'client'], ['x-tag', 'edge'], ['x-calls', '1'], ['x-seen-tags', 'client,edge']],
    });
  });

  it('returns a local response with lower-cased header names', () => {
    expect(f.request({ path: '/teapot' })).toEqual({
      action: 'respond',
      response: { status: 418, body: 'short and stout', headers: [['x-a', '1'], ['x-b', '2']] },
    });
  });

  it('applies a :status rewrite to the returned response and shows the forwarded request', () => {
    const r = f.response({ status: 404, headers: { 'content-length': '0' } }, { path: '/v2/gone' });
    expect(r.action).toBe('continue');
    if (r.action !== 'continue') return;
    expect(r.ops).toEqual([{ tag: 'set', val: [':status', '410'] }, { tag: 'set', val: ['x-request-path', '/v2/gone'] }]);
    expect(r.response).toEqual({ status: 410, headers: [['content-length', '0'], ['x-request-path', '/v2/gone']] });
  });

  it('turns a throw in a handler into FilterTrapError naming the phase, then starts a fresh instance', () => {
    const before = f.request({ path: '/a' });
    expect(before.action === 'continue' && Number(before.request.headers.find(([k]) => k === 'x-calls')?.[1])).toBeGreaterThan(1);
    const e = thrown(() => f.request({ path: '/boom' }));
    expect(e).toBeInstanceOf(FilterTrapError);
    // The exception, its stack at the filter's TypeScript lines, then the trap.
    expect((e as Error).message).toMatch(/^filter edge trapped in onRequest: Error: edge exploded\n\s+at onRequest \(src\/filter\.ts:\d+:\d+\)[\s\S]*unreachable/);
    expect((e as Error).message).not.toMatch(/filter\.js:\d+/);
    const after = f.request({ path: '/a' });
    expect(after.action === 'continue' && after.request.headers.find(([k]) => k === 'x-calls')).toEqual(['x-calls', '1']);
  });
});
