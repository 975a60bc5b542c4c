/**
 * The six built-in filters (filters/*) through a running node proxy (`runNode` from a
 * mesh config), with real upstreams on loopback addresses and clients bound to the
 * addresses of mesh workloads, so each request carries that workload's identity.
 *
 * Identities: outbound traffic carries the source workload's SPIFFE ID from the mesh
 * config. The same policies against identities proven by mTLS between two node proxies
 * are in `authz-mtls.test.ts`.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindingFromArtifact, NodeProxy, runNode, V8Engine, type RunningNode } from '@ambit/runtime';
import { loadFilterArtifact } from '@ambit/filter-sdk/host';
import { buildBuiltinFilters, builtinDir } from './fixtures.js';
import { staticState } from './support/state.js';
import { recordingTelemetry, until } from './support/telemetry.js';

const WEB = '127.0.8.1';
const BATCH = '127.0.8.2';
const OPS = '127.0.8.3';

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

function request(port: number, p: string, opts: { from?: string; headers?: Record<string, string>; method?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method: opts.method ?? 'GET', headers: opts.headers, localAddress: opts.from ?? WEB, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * An upstream on `address`: `/flaky/<key>/<n>` answers 503 to the first n requests of
 * that key; `/down` answers 503 after 50 ms; `/retry-after/<key>` answers 503 with
 * `retry-after: 1` once; `/slow-once/<key>/<ms>` waits that long the first time; anything
 * else 200. Every answer echoes who answered and the
 * request headers it got.
 */
async function upstream(name: string, address: string, port: number): Promise<{ hits: Map<string, number>; total(): number; close(): Promise<void> }> {
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const p = req.url ?? '/';
    const n = (hits.get(p) ?? 0) + 1;
    hits.set(p, n);
    const reply = (status: number, extra: Record<string, string> = {}) => {
      const body = JSON.stringify({ upstream: name, headers: req.headers });
      res.writeHead(status, { 'content-type': 'application/json', 'x-upstream': name, ...extra });
      res.end(body);
    };
    let m: RegExpMatchArray | null;
    if ((m = p.match(/^\/flaky\/[^/]+\/(\d+)/))) return reply(n <= Number(m[1]) ? 503 : 200);
    if (p.startsWith('/down')) return void setTimeout(() => reply(503), 50);
    if (p.startsWith('/retry-after/')) return reply(n === 1 ? 503 : 200, n === 1 ? { 'retry-after': '1' } : {});
    if ((m = p.match(/^\/slow-once\/[^/]+\/(\d+)/))) return void setTimeout(() => reply(200), n === 1 ? Number(m[1]) : 0);
    reply(200);
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, address, () => resolve()); });
  return {
    hits,
    total: () => [...hits.values()].reduce((a, b) => a + b, 0),
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** A port free on every address given (tried from a random start, bounded). */
async function commonPort(addresses: string[]): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 30000);
    const ok = await Promise.all(addresses.map((a) => new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, a, () => s.close(() => resolve(true)));
    })));
    if (ok.every(Boolean)) return port;
  }
  throw new Error('no common free port');
}

function meshYaml(port: number): string {
  const ref = (n: string) => JSON.stringify(builtinDir(n as 'authz'));
  return `
trustDomain: mesh.test
node: node-1
proxy:
  # No capture here: the listener's target is reviews; a Host header names the others.
  outbound: { target: "reviews.shop:9080" }
  filterThreads: 2
  limits: { maxAttempts: 5 }
workloads:
  - { name: web, namespace: shop, serviceAccount: web, address: ${WEB} }
  - { name: batch, namespace: jobs, serviceAccount: batch, address: ${BATCH} }
  - { name: console, namespace: ops, serviceAccount: admin, address: ${OPS} }
  - { name: reviews-v1, namespace: shop, address: 127.0.7.1, labels: { app: reviews, version: v1 } }
  - { name: reviews-v2, namespace: shop, address: 127.0.7.2, labels: { app: reviews, version: v2 } }
  - { name: flaky-1, namespace: shop, address: 127.0.7.3, labels: { app: flaky } }
  - { name: down-1, namespace: shop, address: 127.0.7.4, labels: { app: down } }
  - { name: gone-1, namespace: shop, address: 127.0.7.5, labels: { app: gone } }
  - { name: gone-2, namespace: shop, address: 127.0.7.6, labels: { app: gone } }
services:
  - name: reviews
    namespace: shop
    ports: [{ port: 9080, targetPort: ${port}, protocol: http }]
    selector: { app: reviews }
    subsets:
      - { name: v1, labels: { version: v1 } }
      - { name: v2, labels: { version: v2 } }
  - { name: flaky, namespace: shop, ports: [{ port: 9080, targetPort: ${port}, protocol: http }], selector: { app: flaky } }
  - name: down
    namespace: shop
    ports: [{ port: 9080, targetPort: ${port}, protocol: http }]
    selector: { app: down }
    outlierDetection: { consecutive5xx: 0 }
  - name: gone
    namespace: shop
    ports: [{ port: 9080, targetPort: ${port}, protocol: http }]
    selector: { app: gone }
    loadBalancer: round-robin
    outlierDetection: { consecutive5xx: 0 }
bindings:
  - name: reviews-chain
    target: { service: reviews.shop }
    direction: outbound
    filters:
      - deadlineMs: 5000
        ref: ${ref('authz')}
        config:
          policies:
            - { name: no-batch-writes, action: DENY, rules: [{ from: [{ source: { namespaces: [jobs] } }], to: [{ operation: { notMethods: [GET] } }] }] }
            - name: shop-and-jobs-read
              action: ALLOW
              rules:
                - { from: [{ source: { namespaces: [shop, jobs] } }], to: [{ operation: { methods: [GET], notPaths: ["/admin/*"] } }] }
            - { name: ops-all, action: ALLOW, rules: [{ from: [{ source: { principals: ["mesh.test/ns/ops/sa/admin"] } }] }] }
      - deadlineMs: 5000
        ref: ${ref('ratelimit')}
        config: { maxTokens: 10, tokensPerFill: 10, fillIntervalMs: 600000, key: { by: header, header: x-api-key } }
      - deadlineMs: 5000
        ref: ${ref('fault')}
        config: { abort: { percentage: 100, httpStatus: 418, body: "injected" }, match: { x-chaos: abort } }
      - deadlineMs: 5000
        ref: ${ref('fault')}
        name: fault-delay
        config: { delay: { percentage: 100, fixedDelayMs: 150 }, match: { x-chaos: delay } }
      - deadlineMs: 5000
        ref: ${ref('traffic-split')}
        config: { subsets: [{ name: v1, weight: 80 }, { name: v2, weight: 20 }], sticky: { header: x-user } }
      - deadlineMs: 5000
        ref: ${ref('headers')}
        config:
          request: { set: { x-source-identity: "%SOURCE_IDENTITY%", x-ambit-request-id: "%REQUEST_ID%" }, remove: [x-internal] }
          response: { set: { x-served-by: "%DESTINATION_SERVICE%" }, remove: [x-upstream-secret] }
      - deadlineMs: 5000
        ref: ${ref('retry')}
        config: { attempts: 3, retryOn: [5xx, connect-failure, reset], backoff: { baseMs: 5, maxMs: 20 } }
  - name: flaky-retry
    target: { service: flaky.shop }
    direction: outbound
    filters:
      - deadlineMs: 5000
        ref: ${ref('ratelimit')}
        config: { maxTokens: 3, tokensPerFill: 3, fillIntervalMs: 600000, key: { by: header, header: x-api-key } }
      - deadlineMs: 5000
        ref: ${ref('retry')}
        config: { attempts: 3, perTryTimeoutMs: 300, retryOn: [5xx], backoff: { baseMs: 5, maxMs: 20 }, budget: null }
  - name: gone-retry
    target: { service: gone.shop }
    direction: outbound
    filters:
      - deadlineMs: 5000
        ref: ${ref('retry')}
        config: { attempts: 2, retryOn: [connect-failure], backoff: { baseMs: 1, maxMs: 5 } }
  - name: down-retry
    target: { service: down.shop }
    direction: outbound
    filters:
      - deadlineMs: 5000
        ref: ${ref('retry')}
        config: { attempts: 3, retryOn: [5xx], backoff: { baseMs: 1, maxMs: 5 }, budget: { percent: 20, minRetryConcurrency: 2 } }
`;
}

describe('built-in filters through a node proxy', () => {
  let dir: string;
  let node: RunningNode;
  let port: number;
  let out: number;
  let admin: number;
  const ups: Array<Awaited<ReturnType<typeof upstream>>> = [];
  let v1: Awaited<ReturnType<typeof upstream>>;
  let v2: Awaited<ReturnType<typeof upstream>>;
  let flaky: Awaited<ReturnType<typeof upstream>>;
  let down: Awaited<ReturnType<typeof upstream>>;

  const counter = async (filter: string, name: string): Promise<number> => {
    const text = (await request(admin, '/stats/prometheus', { from: '127.0.0.1' })).body;
    const m = new RegExp(`ambit_filter_counter_total\\{filter="${filter}",name="${name}"\\} (\\d+)`).exec(text);
    return m ? Number(m[1]) : 0;
  };

  beforeAll(async () => {
    await buildBuiltinFilters();
    port = await commonPort(['127.0.7.1', '127.0.7.2', '127.0.7.3', '127.0.7.4', '127.0.7.5', '127.0.7.6']);
    ups.push((v1 = await upstream('reviews-v1', '127.0.7.1', port)));
    ups.push((v2 = await upstream('reviews-v2', '127.0.7.2', port)));
    ups.push((flaky = await upstream('flaky-1', '127.0.7.3', port)));
    ups.push((down = await upstream('down-1', '127.0.7.4', port)));
    ups.push(await upstream('gone-2', '127.0.7.6', port));
    dir = await mkdtemp(path.join(os.tmpdir(), 'amb7-filters-'));
    const configPath = path.join(dir, 'mesh.yaml');
    await writeFile(configPath, meshYaml(port));
    node = await runNode({ config: configPath, accessLog: 'off', logLevel: 'silent', watch: false, ports: { outbound: 0, inbound: 0, admin: 0 } });
    out = node.proxy.addresses().outbound!.port;
    admin = node.admin!.address().port;
  });

  afterAll(async () => {
    await node?.close();
    await Promise.all(ups.map((u) => u.close()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('authz: a principal × path × method matrix, with 403 bodies naming the policy', async () => {
    const matrix: Array<[string, string, string, number, string?]> = [
      [WEB, 'GET', '/reviews/1', 200],
      [WEB, 'POST', '/reviews/1', 403, 'no ALLOW policy matched'],
      [WEB, 'GET', '/admin/stats', 403, 'no ALLOW policy matched'],
      [BATCH, 'GET', '/reviews/1', 200],
      [BATCH, 'DELETE', '/reviews/1', 403, 'policy no-batch-writes'],
      [OPS, 'DELETE', '/reviews/1', 200],
      [OPS, 'GET', '/admin/stats', 200],
      ['127.0.0.1', 'GET', '/reviews/1', 403, 'no ALLOW policy matched'],
    ];
    for (const [from, method, p, status, body] of matrix) {
      const r = await request(out, p, { from, method });
      expect({ from, method, p, status: r.status }).toEqual({ from, method, p, status });
      if (body) expect(r.body).toContain(body);
    }
  });

  it('the chain composes: identity and request id headers go upstream, response headers are rewritten, the route is by subset', async () => {
    const r = await request(out, '/reviews/2', { headers: { 'x-internal': 'secret', 'x-user': 'alice' } });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body) as { upstream: string; headers: Record<string, string> };
    expect(seen.headers['x-source-identity']).toBe('spiffe://mesh.test/ns/shop/sa/web');
    expect(seen.headers['x-ambit-request-id']).toBe(seen.headers['x-request-id']);
    expect(seen.headers['x-internal']).toBeUndefined();
    expect(r.headers['x-served-by']).toBe('reviews.shop');
    // No routing header leaks upstream.
    expect(Object.keys(seen.headers).filter((h) => h.includes('subset'))).toEqual([]);
    expect(['reviews-v1', 'reviews-v2']).toContain(seen.upstream);
  });

  it('traffic-split: 80/20 across subsets, and sticky by header', async () => {
    const by = { 'reviews-v1': 0, 'reviews-v2': 0 } as Record<string, number>;
    for (let i = 0; i < 100; i++) {
      const r = await request(out, `/split/${i}`);
      by[(JSON.parse(r.body) as { upstream: string }).upstream]! += 1;
    }
    // P(v2 gets none of 100 at 20%) ≈ 2e-10; P(v2 ≥ v1) is as small.
    expect(by['reviews-v2']).toBeGreaterThan(0);
    expect(by['reviews-v1']).toBeGreaterThan(by['reviews-v2']!);
    for (const user of ['u1', 'u2', 'u3', 'u4']) {
      const got = new Set<string>();
      for (let i = 0; i < 5; i++) got.add((JSON.parse((await request(out, '/sticky', { headers: { 'x-user': user } })).body) as { upstream: string }).upstream);
      expect(got.size).toBe(1);
    }
  });

  it('fault: an abort never reaches the upstream; a delay holds the request', async () => {
    const before = v1.total() + v2.total();
    const r = await request(out, '/fault', { headers: { 'x-chaos': 'abort' } });
    expect(r.status).toBe(418);
    expect(r.body).toBe('injected');
    expect(r.headers['x-ambit-fault']).toBe('abort');
    expect(v1.total() + v2.total()).toBe(before);
    const d = await request(out, '/fault-delay', { headers: { 'x-chaos': 'delay' } });
    expect(d.status).toBe(200);
    expect((JSON.parse(d.body) as { headers: Record<string, string> }).headers['x-ambit-fault']).toBe('delay');
    expect(await counter('fault-delay', 'delays_injected')).toBe(1);
  });

  it('ratelimit: one bucket shared by both filter threads — exactly maxTokens of 40 concurrent requests pass', async () => {
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => request(out, `/limited/${i}`, { headers: { 'x-api-key': 'key-1' } })));
    const ok = replies.filter((r) => r.status === 200).length;
    const limited = replies.filter((r) => r.status === 429);
    expect(ok).toBe(10);
    expect(limited).toHaveLength(30);
    expect(limited[0]!.headers['retry-after']).toMatch(/^\d+$/);
    expect(limited[0]!.headers['x-ratelimit-limit']).toBe('10');
    // Another key has its own bucket.
    expect((await request(out, '/limited/other', { headers: { 'x-api-key': 'key-2' } })).status).toBe(200);
  });

  it('ratelimit: another binding of the same filter has its own buckets', async () => {
    // key-1 is used up on reviews (previous test); flaky's binding counts it afresh.
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await request(out, `/own/${i}`, { headers: { host: 'flaky.shop:9080', 'x-api-key': 'key-1' } })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
  });

  it('retry: a flaky upstream is recovered, within the attempt limit', async () => {
    const r = await request(out, '/flaky/a/2', { headers: { host: 'flaky.shop:9080' } });
    expect(r.status).toBe(200);
    expect(flaky.hits.get('/flaky/a/2')).toBe(3);
    // Failing more often than the retries allow: the last 503 goes back.
    const gone = await request(out, '/flaky/b/9', { headers: { host: 'flaky.shop:9080' } });
    expect(gone.status).toBe(503);
    expect(flaky.hits.get('/flaky/b/9')).toBe(4);
    // POST is not idempotent: not retried.
    const post = await request(out, '/flaky/c/1', { headers: { host: 'flaky.shop:9080' }, method: 'POST' });
    expect(post.status).toBe(503);
    expect(flaky.hits.get('/flaky/c/1')).toBe(1);
  });

  it('retry: a per-try timeout (a local 504) is retried; Retry-After is waited for', async () => {
    const slow = await request(out, '/slow-once/a/3000', { headers: { host: 'flaky.shop:9080' } });
    expect(slow.status).toBe(200);
    expect(flaky.hits.get('/slow-once/a/3000')).toBe(2);
    const later = await request(out, '/retry-after/a', { headers: { host: 'flaky.shop:9080' } });
    expect(later.status).toBe(200);
    expect(flaky.hits.get('/retry-after/a')).toBe(2);
  });

  it('retry: a connect failure is retried on another endpoint, even for POST', async () => {
    // gone-1 (127.0.7.5) has nothing listening; gone-2 answers. Round robin sends every
    // other first try to gone-1.
    const replies = [];
    for (let i = 0; i < 6; i++) replies.push(await request(out, `/post/${i}`, { headers: { host: 'gone.shop:9080' }, method: 'POST' }));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(replies.every((r) => (JSON.parse(r.body) as { upstream: string }).upstream === 'gone-2')).toBe(true);
    expect(await counter('retry', 'retry_connect-failure')).toBeGreaterThanOrEqual(3);
  });

  it('retry: an outage — the budget stops retries from multiplying the load', async () => {
    const n = 30;
    const replies = await Promise.all(Array.from({ length: n }, (_, i) => request(out, `/down/${i}`, { headers: { host: 'down.shop:9080' } })));
    expect(replies.every((r) => r.status === 503)).toBe(true);
    // Without a budget: n × 4 tries. With 20% of 30 in flight (6) retrying at a time,
    // far fewer reach the failing upstream.
    const tries = down.total();
    expect(tries).toBeGreaterThanOrEqual(n);
    expect(tries).toBeLessThan(n * 2);
    expect(await counter('retry', 'budget_exhausted')).toBeGreaterThan(0);
    // Every request and retry counted in the service's load was let go again.
    const load = node.state.routeByHost!('outbound', 'down.shop:9080', 9080)!.load!;
    await until(() => Atomics.load(load, 0) === 0 && Atomics.load(load, 1) === 0, 'the load counters to drain');
  });

  it('retry inside the full chain: a 503 from a subset is retried', async () => {
    const r = await request(out, '/flaky/chain/1', { headers: { 'x-user': 'bob' } });
    expect(r.status).toBe(200);
    expect((v1.hits.get('/flaky/chain/1') ?? 0) + (v2.hits.get('/flaky/chain/1') ?? 0)).toBe(2);
  });
});

describe('authz at L4: non-HTTP traffic is refused at the connection phase', () => {
  it('lets a TCP client of an allowed namespace through and closes one from another', async () => {
    await buildBuiltinFilters();
    const echo = net.createServer((s) => { s.on('data', (d) => s.write(`echo:${d.toString()}`)); s.on('error', () => {}); });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const engine = new V8Engine({ workers: 1, onLog: () => {} });
    const telemetry = recordingTelemetry();
    let proxy: NodeProxy | undefined;
    try {
      const authz = await loadFilterArtifact(builtinDir('authz'));
      const chain = await engine.createChain([bindingFromArtifact(authz, {
        config: { policies: [{ name: 'shop-only', action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['shop'] } }], to: [{ operation: { ports: [5432] } }] }] }] },
      })]);
      const identity = (ns: string, sa: string) => `spiffe://mesh.test/ns/${ns}/sa/${sa}`;
      proxy = new NodeProxy({
        listeners: [{ name: 'db', direction: 'outbound', address: '127.0.0.1', port: 0, target: { address: '10.207.0.10', port: 5432 } }],
        state: staticState({
          routes: [{ address: '10.207.0.10', port: 5432, service: 'db.shop', endpoints: [['127.0.0.1', (echo.address() as AddressInfo).port]], chain, protocol: 'tcp' }],
          workloads: [
            { name: 'web', namespace: 'shop', serviceAccount: 'web', address: WEB, identity: identity('shop', 'web') },
            { name: 'batch', namespace: 'jobs', serviceAccount: 'batch', address: BATCH, identity: identity('jobs', 'batch') },
          ],
        }),
        telemetry,
      });
      await proxy.start();
      const port = proxy.addresses().db!.port;
      const talk = (from: string) => new Promise<string>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
        let got = '';
        s.on('data', (d) => { got += d.toString(); if (got.includes('\n')) s.end(); });
        s.on('connect', () => s.write('SELECT 1\n'));
        s.on('close', () => resolve(got));
        s.on('error', () => {});
        s.setTimeout(5_000, () => s.destroy());
      });
      expect(await talk(WEB)).toBe('echo:SELECT 1\n');
      expect(await talk(BATCH)).toBe('');
      await until(() => telemetry.connections.some((c) => c.denied), 'the denied connection record');
      const denied = telemetry.connections.find((c) => c.denied)!;
      expect(denied.denied).toEqual({ filter: 'authz', reason: `authz: connection to 10.207.0.10:5432 from ${identity('jobs', 'batch')} denied: no ALLOW policy matched (shop-only)` });
    } finally {
      await proxy?.close(100);
      await engine.close();
      await new Promise<void>((r) => echo.close(() => r()));
    }
  });
});

describe('traffic-split to a subset the service does not define', () => {
  it('answers a local 503 naming the subset and the ones that exist; nothing goes upstream', async () => {
    await buildBuiltinFilters();
    let hits = 0;
    const up = http.createServer((_q, s) => { hits++; s.end('ok'); });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const engine = new V8Engine({ workers: 1, onLog: () => {} });
    let proxy: NodeProxy | undefined;
    try {
      const split = await loadFilterArtifact(builtinDir('traffic-split'));
      const chain = await engine.createChain([bindingFromArtifact(split, { config: { subsets: [{ name: 'v9', weight: 1 }] } })]);
      const state = staticState({ routes: [{ address: '10.207.0.20', port: 80, service: 'reviews.shop', endpoints: [['127.0.0.1', (up.address() as AddressInfo).port]], chain }] });
      proxy = new NodeProxy({ listeners: [{ name: 'out', direction: 'outbound', address: '127.0.0.1', port: 0, target: { address: '10.207.0.20', port: 80 } }], state, telemetry: recordingTelemetry() });
      await proxy.start();
      const r = await request(proxy.addresses().out!.port, '/', { from: '127.0.0.1' });
      expect(r.status).toBe(503);
      expect(r.headers['x-ambit-upstream-error']).toBe('no-subset');
      expect(r.body).toBe('no healthy upstream: subset "v9" is not defined for reviews.shop (defined: none); add it to the service\'s subsets in the mesh config\n');
      expect(hits).toBe(0);
    } finally {
      await proxy?.close(100);
      await engine.close();
      await new Promise<void>((r) => up.close(() => r()));
    }
  });
});

describe('fault: a gRPC abort reaches a gRPC client as that status', () => {
  it('answers UNAVAILABLE with the configured message, trailers-only, without reaching the server', async () => {
    await buildBuiltinFilters();
    const grpc = await import('@grpc/grpc-js');
    const json = { serialize: (v: unknown) => Buffer.from(JSON.stringify(v)), deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown };
    const service = {
      echo: { path: '/ambit.test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
    };
    let reached = 0;
    const server = new grpc.Server();
    server.addService(service, { echo: (_call: unknown, cb: (e: null, r: unknown) => void) => { reached++; cb(null, { ok: true }); } });
    const grpcPort = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    const engine = new V8Engine({ workers: 1, onLog: () => {} });
    let proxy: NodeProxy | undefined;
    const Client = grpc.makeGenericClientConstructor(service, 'Echo');
    try {
      const fault = await loadFilterArtifact(builtinDir('fault'));
      const chain = await engine.createChain([bindingFromArtifact(fault, { config: { abort: { percentage: 100, grpcStatus: 14, body: 'injected outage' }, match: { 'x-chaos': '' } }, deadlineMs: 5_000 })]);
      const state = staticState({ routes: [{ address: '10.207.0.30', port: 50051, service: 'echo.shop', endpoints: [['127.0.0.1', grpcPort]], chain, protocol: 'http2' }] });
      proxy = new NodeProxy({ listeners: [{ name: 'out', direction: 'outbound', address: '127.0.0.1', port: 0, target: { address: '10.207.0.30', port: 50051 } }], state, telemetry: recordingTelemetry() });
      await proxy.start();
      const c = new Client(`127.0.0.1:${proxy.addresses().out!.port}`, grpc.credentials.createInsecure()) as unknown as {
        echo(req: unknown, md: InstanceType<typeof grpc.Metadata>, cb: (e: { code: number; details: string } | null, r?: unknown) => void): void;
        close(): void;
      };
      const call = (chaos: boolean) => new Promise<{ code: number; details: string } | null>((resolve) => {
        const md = new grpc.Metadata();
        if (chaos) md.set('x-chaos', '1');
        c.echo({ text: 'hi' }, md, (e) => resolve(e));
      });
      try {
        const err = await call(true);
        expect(err).toMatchObject({ code: grpc.status.UNAVAILABLE, details: 'injected outage' });
        expect(reached).toBe(0);
        expect(await call(false)).toBeNull();
        expect(reached).toBe(1);
      } finally {
        c.close();
      }
    } finally {
      await proxy?.close(100);
      await engine.close();
      server.forceShutdown();
    }
  });
});
