/**
 * The host functions beyond headers — random, shared storage, traffic directives,
 * upstream error and load — called from a real component in the harness, including
 * their misuse (wrong phase, undeclared capability, oversized key), which traps the
 * call with a coded error.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmbitError } from '@ambit/filter-sdk/host';
import { FilterTrapError, loadFilter, SharedTable } from '@ambit/filter-sdk/testing';
import { buildWithCli, makeTempRoot, thrown, useCacheIn, writeFilterPackage } from './helpers.js';

let root: string;
let cleanup: () => Promise<void>;
let restoreCache: () => void;
let dir: string;
let noSharedDir: string;

const SOURCE = (capabilities: string) => [
  "import { defineFilter, random, shared as sdkShared, traffic } from '@ambit/filter-sdk';",
  "// Through an array, past the build's capability check: without 'shared' declared, the host's own refusal is tested.",
  "const shared = [sdkShared][0]!;",
  '',
  "// Through an array, past the build's capability check: the host's own refusal is tested.",
  'const store = [shared][0]!;',
  '',
  'export default defineFilter({',
  "  name: 'hostfns',",
  `  capabilities: ${capabilities},`,
  '  onRequest(req) {',
  "    if (req.path === '/random') req.headers.set('x-random', String(random()));",
  "    if (req.path === '/count') req.headers.set('x-count', String(store.add('hits')));",
  "    if (req.path === '/long-key') store.add('k'.repeat(200));",
  "    if (req.path === '/cas') {",
  "      const e = store.get('cas');",
  "      req.headers.set('x-cas', String(store.compareAndSet('cas', 'v', e ? e.version : 0)));",
  '    }',
  "    if (req.path === '/direct') { traffic.delay(30); traffic.delay(12); traffic.routeToSubset('canary'); traffic.setPerTryTimeout(700); }",
  '  },',
  '  onResponse(res, ctx) {',
  "    if (ctx.request.path === '/late-delay') traffic.delay(5);",
  "    const load = traffic.load();",
  "    res.headers.set('x-upstream-error', ctx.upstreamError ?? 'none');",
  "    res.headers.set('x-load', `${load.activeRequests}/${load.activeRetries}`);",
  '  },',
  '});',
  '',
].join('\n');

beforeAll(async () => {
  ({ root, cleanup } = await makeTempRoot('hostfns'));
  restoreCache = useCacheIn(root);
  dir = await writeFilterPackage(path.join(root, 'hostfns'), SOURCE("['random', 'shared', 'traffic']"));
  noSharedDir = await writeFilterPackage(path.join(root, 'noshared'), SOURCE("['random', 'traffic']"));
  for (const d of [dir, noSharedDir]) {
    const run = await buildWithCli(d);
    if (run.code !== 0) throw new Error(run.stderr);
  }
});
afterAll(async () => {
  restoreCache?.();
  await cleanup?.();
});

describe('host functions from a component', () => {
  it('random() comes from the host (the harness can fix it)', async () => {
    const f = await loadFilter(dir, { random: () => 0.25 });
    expect(f.request({ path: '/random' })).toMatchObject({ action: 'continue', request: { headers: [['x-random', '0.25']] } });
  });

  it('shared storage: atomic add and compare-and-set, shared by instances given one table', async () => {
    const table = SharedTable.create();
    const a = await loadFilter(dir, { shared: table });
    const b = await loadFilter(dir, { shared: table });
    const count = (f: typeof a) => { const r = f.request({ path: '/count' }); return r.action === 'continue' ? r.request.headers[0]![1] : ''; };
    expect([count(a), count(b), count(a)]).toEqual(['1', '2', '3']);
    const cas = (f: typeof a) => { const r = f.request({ path: '/cas' }); return r.action === 'continue' ? r.request.headers[0]![1] : ''; };
    expect(cas(a)).toBe('true');
    expect(cas(b)).toBe('true'); // read the current version first: succeeds
    expect(table.get('hits')?.value).toBe('3');
  });

  it('request directives add up (delays) or the last wins (subset, per-try timeout), and send no header', async () => {
    const f = await loadFilter(dir);
    expect(f.request({ path: '/direct' })).toEqual({
      action: 'continue', request: expect.objectContaining({ headers: [] }), ops: [],
      directives: { delayMs: 42, subset: 'canary', perTryTimeoutMs: 700 },
    });
  });

  it('the response phase reads why the attempt failed and the service load', async () => {
    const f = await loadFilter(dir);
    const r = f.response({ status: 503 }, { path: '/' }, { upstreamError: 'connect-failure', load: { activeRequests: 7, activeRetries: 2 } });
    expect(r).toMatchObject({ action: 'continue', response: { headers: [['x-upstream-error', 'connect-failure'], ['x-load', '7/2']] } });
    const plain = f.response({ status: 200 }, { path: '/' });
    expect(plain).toMatchObject({ action: 'continue', response: { headers: [['x-upstream-error', 'none'], ['x-load', '0/0']] } });
  });

  it('a traffic directive outside the request phase traps with AMBIT_ERR_HOST_CALL', async () => {
    const f = await loadFilter(dir);
    const e = thrown(() => f.response({ status: 200 }, { path: '/late-delay' }));
    expect(e).toBeInstanceOf(FilterTrapError);
    expect(((e as Error).cause as AmbitError).code).toBe('AMBIT_ERR_HOST_CALL');
    expect((e as Error).message).toContain('called delay-request outside the request phase (responseHeaders)');
  });

  it('an oversized shared key traps with AMBIT_ERR_HOST_CALL', async () => {
    const f = await loadFilter(dir);
    const e = thrown(() => f.request({ path: '/long-key' }));
    expect(((e as Error).cause as AmbitError).code).toBe('AMBIT_ERR_HOST_CALL');
    expect((e as Error).message).toContain('a key must be 1 to 128 bytes, got 200');
  });

  it('shared storage without the capability traps with AMBIT_ERR_CAPABILITY', async () => {
    const f = await loadFilter(noSharedDir);
    expect(f.manifest?.capabilities).toEqual(['random', 'traffic']);
    const e = thrown(() => f.request({ path: '/count' }));
    expect(((e as Error).cause as AmbitError).code).toBe('AMBIT_ERR_CAPABILITY');
    expect((e as Error).message).toContain('used the "shared" capability without declaring it');
  });
});
