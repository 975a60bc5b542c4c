/**
 * The StarlingMonkey engine: the hello example built with `--engine starlingmonkey`
 * behaves in the harness exactly like the QuickJS build.
 *
 * One StarlingMonkey build takes tens of seconds and about 800 MB of memory.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmbitError } from '@ambit/filter-sdk/host';
import { loadFilter, type ConnectionInput, type ContextInput, type RequestInput, type ResponseInput, type TestFilter } from '@ambit/filter-sdk/testing';
import { buildWithCli, copyHello, makeTempRoot, useCacheIn, type CliRun } from './helpers.js';

const IDENTITY = 'spiffe://mesh.test/ns/default/sa/web';

type Scenario =
  | { phase: 'connection'; input: ConnectionInput }
  | { phase: 'request'; request: RequestInput; ctx?: ContextInput }
  | { phase: 'response'; response: ResponseInput; request?: RequestInput; ctx?: ContextInput };

const SCENARIOS: Record<string, Scenario> = {
  'request, greeting header': { phase: 'request', request: { path: '/api', headers: { accept: '*/*' } }, ctx: { source: { workload: 'web' } } },
  'request, /admin': { phase: 'request', request: { method: 'POST', path: '/admin/x' }, ctx: { source: { identity: IDENTITY } } },
  'response 503, first attempt': { phase: 'response', response: { status: 503 }, ctx: { attempt: 1 } },
  'response 503, last attempt': { phase: 'response', response: { status: 503, headers: { server: 'up' } }, ctx: { attempt: 3 } },
  'response 200': { phase: 'response', response: { status: 200 }, ctx: { attempt: 2 } },
  'connection without identity': { phase: 'connection', input: { source: { address: '10.1.0.5' } } },
  'connection with identity': { phase: 'connection', input: { source: { address: '10.1.0.5', identity: IDENTITY } } },
};

function run(f: TestFilter, s: Scenario): unknown {
  // A fixed request id keeps the inputs identical between engines.
  switch (s.phase) {
    case 'connection': return f.connection({ requestId: 'r', ...s.input });
    case 'request': return f.request(s.request, { requestId: 'r', ...s.ctx });
    case 'response': return f.response(s.response, s.request, { requestId: 'r', ...s.ctx });
  }
}

let root: string;
let cleanup: () => Promise<void>;
let restoreCache: () => void;
let smDir: string;
let qjsDir: string;
let smRun: CliRun;

beforeAll(async () => {
  ({ root, cleanup } = await makeTempRoot('starlingmonkey'));
  restoreCache = useCacheIn(root);
  smDir = await copyHello(path.join(root, 'hello-sm'));
  qjsDir = await copyHello(path.join(root, 'hello-qjs'));
  // One after the other: the StarlingMonkey build alone needs ~800 MB.
  smRun = await buildWithCli(smDir, ['--engine', 'starlingmonkey']);
  await buildWithCli(qjsDir);
});
afterAll(async () => {
  restoreCache?.();
  await cleanup?.();
});

describe('StarlingMonkey build of the hello example', () => {
  it('builds a component with a manifest naming the engine', async () => {
    expect(smRun.stderr).toContain('componentizing with StarlingMonkey');
    const wasm = await readFile(path.join(smDir, 'dist/filter.wasm'));
    expect([...wasm.subarray(4, 8)]).toEqual([0x0d, 0x00, 0x01, 0x00]);
    const manifest = JSON.parse(await readFile(path.join(smDir, 'dist/manifest.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest).toMatchObject({
      engine: 'starlingmonkey',
      name: 'hello',
      sha256: createHash('sha256').update(wasm).digest('hex'),
      capabilities: ['log', 'counters'],
      phases: ['connection', 'requestHeaders', 'responseHeaders'],
    });
  });

  describe.each([
    ['default config', {}],
    ['requireIdentity, maxAttempts 2', { requireIdentity: true, maxAttempts: 2, header: 'x-hi' }],
  ])('with %s', (_label, config) => {
    let sm: TestFilter;
    let qjs: TestFilter;
    beforeAll(async () => {
      sm = await loadFilter(smDir, { config });
      qjs = await loadFilter(qjsDir, { config });
    });

    it('reports the same name and phases', () => {
      expect(sm.name).toBe(qjs.name);
      expect(sm.phases).toEqual(qjs.phases);
    });

    it.each(Object.keys(SCENARIOS))('%s: same result as QuickJS', (name) => {
      const s = SCENARIOS[name]!;
      expect(run(sm, s)).toEqual(run(qjs, s));
    });

    it('records the same logs and counters', () => {
      expect(sm.logs.length).toBeGreaterThan(0);
      expect(sm.logs).toEqual(qjs.logs);
      expect([...sm.counters]).toEqual([...qjs.counters]);
    });
  });

  it('gives the expected hello results (not only the same as QuickJS)', async () => {
    const f = await loadFilter(smDir, { config: { requireIdentity: true } });
    const r = f.request({ path: '/api' }, { source: { workload: 'web' } });
    expect(r.action === 'continue' && r.ops).toEqual([{ tag: 'set', val: ['x-ambit-hello', 'hello from web'] }]);
    expect(f.request({ path: '/admin' })).toMatchObject({ action: 'respond', response: { status: 403 } });
    expect(f.response({ status: 503 }, {}, { attempt: 1 })).toEqual({ action: 'retry', delayMs: 0, reason: 'upstream answered 503' });
    const last = f.response({ status: 503 }, {}, { attempt: 3 });
    expect(last.action === 'continue' && last.response.headers).toEqual([['x-ambit-attempts', '3']]);
    expect(f.connection({ source: { address: '10.1.0.5' } })).toEqual({ action: 'deny', reason: 'hello: 10.1.0.5 has no mTLS identity' });
    expect(f.connection({ source: { address: '10.1.0.5', identity: IDENTITY } })).toEqual({ action: 'allow' });
    expect(f.counters).toEqual(new Map([['denied', 1], ['retries', 1]]));
  });

  it('validates config against the same schema', async () => {
    await expect(loadFilter(smDir, { config: { maxAttempts: 0 } })).rejects.toThrow(AmbitError);
    await expect(loadFilter(smDir, { config: { maxAttempts: 0 } })).rejects.toThrow(/\/maxAttempts/);
  });
});
