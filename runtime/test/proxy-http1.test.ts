import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { bindingFromArtifact, NodeProxy, V8Engine } from '@ambit/runtime';
import { buildFixtures, type Fixtures } from './fixtures.js';
import { staticState } from './support/state.js';
import { recordingTelemetry, until, type RecordingTelemetry } from './support/telemetry.js';
import { httpUpstream, lineUpstream, type Upstream } from './support/upstreams.js';

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

function get(port: number, path: string, opts: { agent?: http.Agent; method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', agent: opts.agent ?? false, headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Sends raw bytes and returns everything the proxy answered before closing. */
function raw(port: number, bytes: string, waitMs = 3_000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    let out = '';
    s.on('data', (d) => { out += d.toString(); });
    const t = setTimeout(() => { s.destroy(); resolve(out); }, waitMs);
    s.on('close', () => { clearTimeout(t); resolve(out); });
    s.on('error', () => {});
  });
}

describe('node proxy: HTTP/1.1 and L4 on loopback', () => {
  let fx: Fixtures;
  let engine: V8Engine;
  let plain: Upstream;
  let filtered: Upstream;
  let lines: Upstream;
  let proxy: NodeProxy;
  let telemetry: RecordingTelemetry;
  const ports: Record<string, number> = {};

  beforeAll(async () => {
    fx = await buildFixtures();
    engine = new V8Engine({ workers: 2, onLog: () => {} });
    plain = await httpUpstream('plain');
    filtered = await httpUpstream('filtered');
    lines = await lineUpstream();
    const hello = await engine.createChain([bindingFromArtifact(fx.hello, { config: { denyPathPrefixes: ['/admin'], retryOn: [503], maxAttempts: 3 } })]);
    const helloStrict = await engine.createChain([bindingFromArtifact(fx.hello, { config: { requireIdentity: true } })]);
    telemetry = recordingTelemetry();
    const state = staticState({
      routes: [
        { address: '10.96.0.1', port: 80, service: 'plain.default', endpoints: [['127.0.0.1', plain.port]] },
        { address: '10.96.0.2', port: 80, service: 'filtered.default', endpoints: [['127.0.0.1', filtered.port]], chain: hello },
        { address: '10.96.0.3', port: 7000, service: 'lines.default', endpoints: [['127.0.0.1', lines.port]] },
        { address: '10.96.0.4', port: 7000, service: 'lines-strict.default', endpoints: [['127.0.0.1', lines.port]], chain: helloStrict },
        { address: '10.96.0.5', port: 80, service: 'down.default', endpoints: [['127.0.0.1', 1]], chain: hello },
      ],
      limits: { maxHeaderBytes: 8 * 1024, headersTimeoutMs: 1_000, retryBufferBytes: 1024 },
    });
    const listeners = [
      { name: 'plain', target: { address: '10.96.0.1', port: 80 } },
      { name: 'filtered', target: { address: '10.96.0.2', port: 80 } },
      { name: 'lines', target: { address: '10.96.0.3', port: 7000 } },
      { name: 'lines-strict', target: { address: '10.96.0.4', port: 7000 } },
      { name: 'down', target: { address: '10.96.0.5', port: 80 } },
    ];
    proxy = new NodeProxy({
      listeners: listeners.map((l) => ({ ...l, direction: 'outbound' as const, address: '127.0.0.1', port: 0 })),
      state,
      telemetry,
    });
    await proxy.start();
    for (const [name, a] of Object.entries(proxy.addresses())) ports[name] = a.port;
  });

  afterAll(async () => {
    await proxy?.close(100);
    await engine?.close();
    await Promise.all([plain?.close(), filtered?.close(), lines?.close()]);
  });

  it('splices HTTP/1.1 at L4 where no L7 filter is bound: bytes pass untouched, keep-alive works', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const a = await get(ports.plain!, '/one', { agent, headers: { 'x-custom': 'kept', connection: 'keep-alive, x-hop', 'x-hop': 'hop' } });
    const b = await get(ports.plain!, '/two', { agent });
    agent.destroy();
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(JSON.parse(a.body)).toMatchObject({ upstream: 'plain', path: '/one' });
    const seen = plain.seen.find((s) => s.path === '/one')!;
    // Never parsed: even connection-scoped headers arrive as sent, and no x-request-id is added.
    expect(seen.headers).toContainEqual(['x-hop', 'hop']);
    expect(seen.headers.map(([k]) => k)).not.toContain('x-request-id');
    await until(() => telemetry.connections.some((c) => c.service === 'plain.default'), 'connection record');
    expect(telemetry.connections.filter((c) => c.service === 'plain.default')).toHaveLength(1);
    expect(telemetry.connections.find((c) => c.service === 'plain.default')?.mode).toBe('l4');
    expect(telemetry.requests.some((r) => r.path === '/one')).toBe(false);
  });

  it('parses HTTP/1.1 where an L7 filter is bound: hop-by-hop headers dropped, x-request-id added, keep-alive kept', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const a = await get(ports.filtered!, '/l7-one', { agent, headers: { 'x-custom': 'kept', connection: 'keep-alive, x-hop', 'x-hop': 'hop' } });
    const b = await get(ports.filtered!, '/l7-two', { agent, headers: { 'x-request-id': 'given-id' } });
    agent.destroy();
    expect([a.status, b.status]).toEqual([200, 200]);
    const one = filtered.seen.find((s) => s.path === '/l7-one')!;
    expect(one.headers).toContainEqual(['x-custom', 'kept']);
    expect(one.headers.map(([k]) => k)).not.toContain('x-hop');
    expect(one.headers.find(([k]) => k === 'x-request-id')?.[1]).toMatch(/^[0-9a-f-]{36}$/);
    expect(filtered.seen.find((s) => s.path === '/l7-two')!.headers).toContainEqual(['x-request-id', 'given-id']);
    await until(() => telemetry.requests.some((r) => r.path === '/l7-two'), 'access records');
    expect(telemetry.requests.find((r) => r.path === '/l7-two')).toMatchObject({ protocol: 'http/1.1', method: 'GET', status: 200, requestId: 'given-id', attempts: 1 });
  });

  it('runs the filter chain: header added, local 403, retry recovers a flaky upstream', async () => {
    const ok = await get(ports.filtered!, '/products');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).headers['x-ambit-hello']).toBe('hello from 127.0.0.1');
    expect(ok.headers['x-ambit-attempts']).toBe('1');

    const denied = await get(ports.filtered!, '/admin/users');
    expect(denied.status).toBe(403);
    expect(denied.body).toContain('forbidden by policy hello');
    expect(filtered.seen.some((s) => s.path === '/admin/users')).toBe(false);

    const flaky = await get(ports.filtered!, '/flaky/2');
    expect(flaky.status).toBe(200);
    expect(flaky.headers['x-ambit-attempts']).toBe('3');
    expect(filtered.seen.filter((s) => s.path === '/flaky/2')).toHaveLength(3);
    await until(() => telemetry.requests.some((r) => r.path === '/flaky/2'), 'access record');
    expect(telemetry.requests.find((r) => r.path === '/flaky/2')).toMatchObject({ status: 200, attempts: 3, service: 'filtered.default' });

    const gaveUp = await get(ports.filtered!, '/flaky/5');
    expect(gaveUp.status).toBe(503);
    expect(gaveUp.headers['x-ambit-attempts']).toBe('3');
  });

  it('retries a POST whose body was buffered, sending the same body each time', async () => {
    const r = await get(ports.filtered!, '/flaky/1', { method: 'POST', body: 'hello-body', headers: { 'content-type': 'text/plain' } });
    expect(r.status).toBe(200);
    const tries = filtered.seen.filter((s) => s.path === '/flaky/1');
    expect(tries.map((t) => t.body)).toEqual(['hello-body', 'hello-body']);
  });

  it('answers 503 naming the reason when the upstream refuses connections, and lets a filter see it', async () => {
    const r = await get(ports.down!, '/anything');
    expect(r.status).toBe(503);
    expect(r.headers['x-ambit-upstream-error']).toBe('connect-failure');
    expect(r.body).toContain('upstream connect error');
  });

  it('reports an upstream reset mid-response instead of swallowing it', async () => {
    await expect(get(ports.filtered!, '/reset')).rejects.toThrow();
    await until(() => telemetry.requests.some((r) => r.path === '/reset'), 'access record of /reset');
    expect(telemetry.requests.find((r) => r.path === '/reset')?.upstreamError).toMatch(/reset|aborted|closed|terminated/i);
  });

  it('answers malformed HTTP with 400/431 and closes, never forwarding it', async () => {
    const before = filtered.seen.length;
    expect(await raw(ports.filtered!, 'GET /ok HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw(ports.filtered!, 'GET /ok HTTP/1.1\r\nHost: x\r\nX-Bin: a\x01b\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw(ports.filtered!, 'POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw(ports.filtered!, `GET /big HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431/);
    expect(await raw(ports.filtered!, 'GET /bad version HTTP/9.9\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/);
    expect(filtered.seen.length).toBe(before);
    // Still serving.
    expect((await get(ports.filtered!, '/still-ok')).status).toBe(200);
  });

  it('declines an HTTP/1.1 upgrade to h2c: served as HTTP/1.1 through the filters', async () => {
    const answer = await raw(ports.filtered!, 'GET /h2c-upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    const seen = filtered.seen.find((s) => s.path === '/h2c-upgrade')!;
    expect(seen.headers.map(([k]) => k)).not.toContain('upgrade');
    expect(seen.headers.map(([k]) => k)).not.toContain('http2-settings');
    expect(seen.headers).toContainEqual(['x-ambit-hello', 'hello from 127.0.0.1']);
  });

  it('closes a client that sends headers too slowly', async () => {
    const answer = await raw(ports.filtered!, 'GET /slowloris HTTP/1.1\r\nHost: x\r\n', 4_000);
    expect(answer).toMatch(/^HTTP\/1\.1 408|^$/);
    expect(filtered.seen.some((s) => s.path === '/slowloris')).toBe(false);
  });

  it('splices a non-HTTP protocol at L4 without parsing it', async () => {
    const s = net.connect(ports.lines!, '127.0.0.1');
    const got = await new Promise<string>((resolve) => {
      let out = '';
      s.on('data', (d) => { out += d.toString(); });
      s.on('end', () => resolve(out));
      s.write('one\ntwo\n');
      setTimeout(() => s.write('bye\n'), 50);
    });
    expect(got).toBe('pong:one\npong:two\npong:bye\n');
    await until(() => telemetry.connections.some((c) => c.service === 'lines.default'), 'L4 connection record');
    const rec = telemetry.connections.find((c) => c.service === 'lines.default')!;
    expect(rec).toMatchObject({ mode: 'l4', bytesReceived: 12, bytesSent: 27, upstream: { address: '127.0.0.1', port: lines.port } });
  });

  it('runs the connection phase on L4 flows: a deny closes the connection with the reason logged', async () => {
    const s = net.connect(ports['lines-strict']!, '127.0.0.1');
    const closed = await new Promise<string>((resolve) => {
      let out = '';
      s.on('data', (d) => { out += d.toString(); });
      s.on('close', () => resolve(out));
      s.on('error', () => {});
      s.write('one\n');
    });
    expect(closed).toBe('');
    await until(() => telemetry.connections.some((c) => c.service === 'lines-strict.default'), 'denied connection record');
    expect(telemetry.connections.find((c) => c.service === 'lines-strict.default')?.denied).toEqual({ filter: 'hello', reason: 'hello: 127.0.0.1 has no mTLS identity' });
  });
});
