/**
 * The V8 host of the ambit:filter@0.2.0 world, through the harness, on a component
 * whose every call is known (`fixtures/probe-filter.wat`): the resources lent per phase,
 * header changes recorded as operations, the forwarded request read-only in the response
 * phase, checked output, capabilities, traps (on both bindings: the world's own and jco's
 * glue); and a 0.1 component refused at load.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmbitError, bindingOf, compileCore, prepareComponent } from '@ambit/filter-sdk/host';
import { FilterTrapError, loadFilter, type TestFilter } from '@ambit/filter-sdk/testing';
import { makeTempRoot, rejection, thrown, useCacheIn } from './helpers.js';
import { worldV01Component, writeProbePackage } from './fixtures/probe.js';

let root: string;
let cleanup: () => Promise<void>;
let restoreCache: () => void;
let probeDir: string;
/** The probe declaring every capability. */
let fullDir: string;

beforeAll(async () => {
  ({ root, cleanup } = await makeTempRoot('world'));
  restoreCache = useCacheIn(root);
  probeDir = await writeProbePackage(path.join(root, 'probe'));
  fullDir = await writeProbePackage(path.join(root, 'full'), ['log', 'counters', 'clock', 'random', 'shared', 'traffic']);
});
afterAll(async () => {
  restoreCache?.();
  await cleanup?.();
});

/** The coded error behind a trap: the host's exception, as it left the component. */
function codeOf(e: Error): string | undefined {
  const cause = e.cause;
  return cause instanceof AmbitError ? cause.code : undefined;
}

describe.each(['direct', 'jco'] as const)('binding %s', (binding) => {
  let f: TestFilter;
  beforeAll(async () => {
    process.env.AMBIT_V8_BINDING = binding;
    f = await loadFilter(probeDir);
  });
  afterAll(() => {
    delete process.env.AMBIT_V8_BINDING;
  });

  it('is the binding the host picks for this component', async () => {
    const prepared = await prepareComponent(await readFile(path.join(probeDir, 'dist/filter.wasm')));
    expect(bindingOf(await compileCore(prepared, 64))).toBe(binding);
  });

  describe('request phase', () => {
    it('reads headers and the context on demand; changes come back as operations, applied to the request', () => {
      const r = f.request(
        { method: 'GET', path: '/items?x=1', headers: { 'X-In': 'copied', cookie: 'secret', accept: '*/*' } },
        { requestId: 'req-42' },
      );
      expect(r.action).toBe('continue');
      if (r.action !== 'continue') return;
      expect(r.ops).toEqual([
        { tag: 'set', val: ['x-out', 'copied'] },
        { tag: 'append', val: ['x-tag', 'wat'] },
        { tag: 'remove', val: 'cookie' },
        { tag: 'set', val: ['x-request-id', 'req-42'] },
        { tag: 'set', val: [':path', '/rewritten'] },
      ]);
      expect(r.request).toEqual({
        method: 'GET', scheme: 'http', authority: 'example.test', path: '/rewritten',
        headers: [['x-in', 'copied'], ['accept', '*/*'], ['x-out', 'copied'], ['x-tag', 'wat'], ['x-request-id', 'req-42']],
      });
    });

    it('rewrites the method and authority as :method and :authority', () => {
      const r = f.request({ path: '/m' });
      expect(r).toMatchObject({ action: 'continue', ops: [{ tag: 'set', val: [':method', 'PATCH'] }, { tag: 'set', val: [':authority', 'backend.internal'] }] });
      expect(r.action === 'continue' && [r.request.method, r.request.authority]).toEqual(['PATCH', 'backend.internal']);
    });

    it('answers locally with a checked response', () => {
      expect(f.request({ path: '/r' })).toEqual({ action: 'respond', response: { status: 418, headers: [['x-a', '1']], body: 'teapot' } });
    });

    it('logs and counts through the host', () => {
      const before = f.logs.length;
      f.request({ path: '/l' });
      f.request({ path: '/l' });
      expect(f.logs.slice(before)).toEqual([{ level: 'info', message: 'hello from wat' }, { level: 'info', message: 'hello from wat' }]);
      expect(f.counters.get('seen')).toBe(4);
    });

    it('passes traffic directives back with the request', () => {
      expect(f.request({ path: '/d' })).toMatchObject({ action: 'continue', ops: [], directives: { delayMs: 5, subset: 'v2' } });
    });
  });

  describe('every value of the world, lifted and lowered', () => {
    let full: TestFilter;
    beforeAll(async () => {
      full = await loadFilter(fullDir, { random: () => 0.25 });
    });

    it('the request phase reads the context, the head and the host', () => {
      const r = full.request(
        { method: 'POST', scheme: 'https', authority: 'api.test', path: '/e', headers: { accept: '*/*', 'x-multi': ['one', 'two'] } },
        {
          direction: 'outbound', service: 'api.a', route: 'r1', attempt: 3, tls: { sni: 'api.test' },
          source: { identity: 'spiffe://td/ns/a/sa/b', workload: 'web', namespace: 'a', address: '10.0.0.1', port: 40123 },
          destination: { workload: 'api', port: 8443 },
        },
      );
      expect(r.action).toBe('continue');
      if (r.action !== 'continue') return;
      // Peer keys are numbers the host hands out: positive, one per peer.
      const keyed = new Map(r.ops.flatMap((o) => (o.tag === 'set' && o.val[0].endsWith('-key') ? [o.val] : [])));
      expect(Number(keyed.get('x-src-key'))).toBeGreaterThan(0);
      expect(Number(keyed.get('x-dst-key'))).toBeGreaterThan(0);
      expect(keyed.get('x-src-key')).not.toBe(keyed.get('x-dst-key'));
      expect(r.ops.filter((o) => !(o.tag === 'set' && o.val[0].endsWith('-key'))).map((o) => (o.tag === 'remove' ? [o.tag, o.val] : [o.tag, ...o.val]))).toEqual([
        ['set', 'x-size', '3'], ['set', 'x-multi-count', '2'], ['set', 'x-multi-first', 'one'], ['set', 'x-entries', '3'],
        ['set', 'x-entry0', 'accept'], ['set', 'x-has-accept', '1'], ['set', 'x-method', 'POST'], ['set', 'x-scheme', 'https'],
        ['set', 'x-authority', 'api.test'], ['set', 'x-direction', 'outbound'], ['set', 'x-src-identity', 'spiffe://td/ns/a/sa/b'],
        ['set', 'x-src-workload', 'web'], ['set', 'x-src-namespace', 'a'], ['set', 'x-src-address', '10.0.0.1'], ['set', 'x-src-port', '40123'],
        ['set', 'x-dst-workload', 'api'], ['set', 'x-dst-port', '8443'], ['set', 'x-service', 'api.a'], ['set', 'x-route', 'r1'],
        ['set', 'x-attempt', '3'], ['set', 'x-tls-version', 'TLSv1.3'], ['set', 'x-sni', 'api.test'], ['set', 'x-shared-add', '2'],
        ['set', 'x-shared-set', '1'], ['set', 'x-shared-value', 'v1'], ['set', 'x-shared-version-is-set', '1'], ['set', 'x-random', '25'],
      ]);
      expect(r.directives).toEqual({ perTryTimeoutMs: 700 });
    });

    it('the response phase reads the response head, the forwarded request and the upstream facts', () => {
      const r = full.response(
        { status: 502, headers: [['server', 'up'], ['x-multi', 'a'], ['x-multi', 'b']] },
        { method: 'PUT', path: '/e', headers: { 'x-in': 'forwarded' } },
        { upstreamError: 'reset', load: { activeRequests: 4, activeRetries: 1 } },
      );
      expect(r.action).toBe('continue');
      if (r.action !== 'continue') return;
      expect(r.ops.map((o) => (o.tag === 'remove' ? [o.tag, o.val] : [o.tag, ...o.val]))).toEqual([
        ['set', 'x-server', 'up'], ['remove', 'server'], ['append', 'x-a', '1'], ['set', 'x-status', '502'], ['set', 'x-size', '3'],
        ['set', 'x-multi-count', '2'], ['set', 'x-entries', '3'], ['set', 'x-entry0-value', 'up'], ['set', 'x-has-server', '1'],
        ['set', 'x-upstream-error', 'reset'], ['set', 'x-load-active', '4'], ['set', 'x-load-retries', '1'], ['set', 'x-req-method', 'PUT'],
        ['set', 'x-req-in', 'forwarded'],
      ]);
      expect(r.response.headers.map(([k]) => k)).toEqual(['x-multi', 'x-multi', 'x-server', 'x-a', 'x-status', 'x-size', 'x-multi-count',
        'x-entries', 'x-entry0-value', 'x-has-server', 'x-upstream-error', 'x-load-active', 'x-load-retries', 'x-req-method', 'x-req-in']);
    });
  });

  describe('response phase', () => {
    it('reads the forwarded request through its handle and changes the response as operations', () => {
      const r = f.response({ status: 404, headers: { server: 'up' } }, { path: '/gone' });
      expect(r).toEqual({
        action: 'continue',
        ops: [{ tag: 'set', val: ['x-request-path', '/gone'] }, { tag: 'set', val: [':status', '410'] }],
        response: { status: 410, headers: [['server', 'up'], ['x-request-path', '/gone']] },
      });
    });

    it('retries', () => {
      expect(f.response({ status: 503 }, { path: '/y' })).toEqual({ action: 'retry', delayMs: 10, reason: 'again' });
    });

    it('traps a change to the forwarded request: it is read-only in the response phase', () => {
      const e = thrown(() => f.response({ status: 200 }, { path: '/m' }));
      expect(e).toBeInstanceOf(FilterTrapError);
      expect(e.message).toContain('the forwarded request is read-only in the response phase');
      expect(codeOf(e)).toBe('AMBIT_ERR_HOST_CALL');
      // The next call gets a fresh instance.
      expect(f.response({ status: 200 }, { path: '/ok' })).toMatchObject({ action: 'continue' });
    });
  });

  describe('connection phase', () => {
    it('reads the TLS facts through the context', () => {
      expect(f.connection()).toEqual({ action: 'deny', reason: 'plaintext' });
      expect(f.connection({ tls: { sni: 'api.test' } })).toEqual({ action: 'allow' });
    });
  });

  describe('invalid output is a filter failure', () => {
    it.each([
      ['/h', 'the header name "bad name", which is not a valid HTTP field name'],
      ['/n', 'set the header x-nl to "a\\nb", which is not a valid HTTP field value'],
      ['/v', 'answered with status 99; a local response is 200–599'],
    ])('request %s', (p, message) => {
      const e = thrown(() => f.request({ path: p }));
      expect(e).toBeInstanceOf(FilterTrapError);
      expect(e.message).toContain(message);
      expect(codeOf(e)).toBe('AMBIT_ERR_FILTER_OUTPUT');
    });

    it('a status outside 100–599 on the response', () => {
      const e = thrown(() => f.response({ status: 200 }, { path: '/s' }));
      expect(e.message).toContain('set the status 600; an HTTP status is 100–599');
      expect(codeOf(e)).toBe('AMBIT_ERR_FILTER_OUTPUT');
    });
  });

  describe('capabilities and traps', () => {
    it('an undeclared capability traps the call, naming it', () => {
      const e = thrown(() => f.request({ path: '/c' }));
      expect(e).toBeInstanceOf(FilterTrapError);
      expect(e.message).toContain('used the "clock" capability without declaring it');
      expect(codeOf(e)).toBe('AMBIT_ERR_CAPABILITY');
      expect(f.request({ path: '/' }).action).toBe('continue');
    });

    it.runIf(binding === 'direct')('a call that returns keeping a lent handle traps, as on wasmtime', () => {
      const e = thrown(() => f.request({ path: '/k' }));
      expect(e).toBeInstanceOf(FilterTrapError);
      expect(e.message).toContain('borrow handles still remain at the end of the call');
      expect(f.request({ path: '/r' }).action).toBe('respond');
    });

    it('a trap reports what the filter said before it, at its TypeScript line (the build\'s source map)', () => {
      const e = thrown(() => f.request({ path: '/x' }));
      expect(e.message).toContain('Error: boom');
      expect(e.message).toContain('at onRequest (src/filter.ts:3:5)');
      expect(e.message).not.toContain('filter.js:1:10');
      expect(thrown(() => f.request({ path: '/u' })).message).toContain('unreachable');
      expect(f.request({ path: '/r' }).action).toBe('respond');
    });

    it('memory past the cap traps that instance only', async () => {
      expect(thrown(() => f.request({ path: '/g' }))).toBeInstanceOf(FilterTrapError);
      const roomy = await loadFilter(probeDir, { memoryMaxPages: 4096 });
      expect(roomy.request({ path: '/g' }).action).toBe('continue');
    });

    it('a refused config fails the load', async () => {
      const e = await rejection(loadFilter(probeDir, { config: { reject: true } }));
      expect(e).toBeInstanceOf(AmbitError);
      expect((e as AmbitError).code).toBe('AMBIT_ERR_CONFIG_REJECTED');
      expect((e as AmbitError).message).toContain('rejected');
    });

    it('many calls on one instance keep working (the lent resources do not pile up)', () => {
      for (let i = 0; i < 2000; i++) {
        const r = f.request({ path: '/p', headers: { 'x-in': String(i) } });
        if (r.action !== 'continue' || r.request.headers[1]?.[1] !== String(i)) throw new Error(`call ${i}: ${JSON.stringify(r)}`);
      }
      expect(f.response({ status: 404 }, { path: '/z' })).toMatchObject({ response: { status: 410 } });
    });
  });
});

describe('a component of the 0.1 world', () => {
  it('is refused at load with AMBIT_ERR_WRONG_WORLD, naming the SDK to rebuild with', async () => {
    const e = await rejection(prepareComponent(await worldV01Component(), { label: 'filter old' }));
    expect(e).toBeInstanceOf(AmbitError);
    expect((e as AmbitError).code).toBe('AMBIT_ERR_WRONG_WORLD');
    expect((e as AmbitError).message).toBe(
      'filter old was built for ambit:filter@0.1.x (it exports ambit:filter/handler@0.1.0); this host runs ambit:filter@0.2.x filters: '
      + 'rebuild it with @ambit/filter-sdk 0.2 (npx ambit-filter build)',
    );
  });
});
