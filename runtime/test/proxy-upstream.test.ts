import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Balancer, bindingFromArtifact, Endpoint, NodeProxy, V8Engine } from '@ambit/runtime';
import { buildFixtures } from './fixtures.js';
import { staticState } from './support/state.js';
import { recordingTelemetry } from './support/telemetry.js';

function get(port: number, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    }).on('error', reject);
  });
}

/** A server that answers `status` and counts what it got. */
async function fixedServer(status: number, delayMs = 0): Promise<{ port: number; hits: number; close(): Promise<void> }> {
  const s = { port: 0, hits: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    s.hits++;
    setTimeout(() => { res.writeHead(status, { 'x-from': String(s.port) }); res.end(String(status)); }, delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  s.port = (server.address() as AddressInfo).port;
  s.close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
  return s;
}

describe('balancers', () => {
  it('round-robin cycles through endpoints', () => {
    const eps = [new Endpoint('10.0.0.1', 80), new Endpoint('10.0.0.2', 80), new Endpoint('10.0.0.3', 80)];
    const b = new Balancer('round-robin');
    expect(Array.from({ length: 6 }, () => b.pick(eps)!.address)).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.2', '10.0.0.3']);
  });

  it('least-request prefers the less busy endpoint of the two it samples', () => {
    const busy = new Endpoint('10.0.0.1', 80);
    const idle = new Endpoint('10.0.0.2', 80);
    busy.active = 10;
    const b = new Balancer('least-request');
    const picks = Array.from({ length: 200 }, () => b.pick([busy, idle])!);
    expect(picks.every((p) => p === idle)).toBe(true);
  });

  it('skips ejected endpoints, and uses all of them when every one is ejected', () => {
    const a = new Endpoint('10.0.0.1', 80);
    const c = new Endpoint('10.0.0.2', 80);
    a.ejectedUntil = Date.now() + 60_000;
    const b = new Balancer('round-robin');
    expect(new Set(Array.from({ length: 10 }, () => b.pick([a, c])!.address))).toEqual(new Set(['10.0.0.2']));
    c.ejectedUntil = Date.now() + 60_000;
    expect(new Set(Array.from({ length: 10 }, () => b.pick([a, c])!.address))).toEqual(new Set(['10.0.0.1', '10.0.0.2']));
  });
});

describe('node proxy: endpoints under failure', () => {
  let engine: V8Engine;
  let good: Awaited<ReturnType<typeof fixedServer>>;
  let bad: Awaited<ReturnType<typeof fixedServer>>;
  let slow: Awaited<ReturnType<typeof fixedServer>>;
  let proxy: NodeProxy;
  const ports: Record<string, number> = {};

  beforeAll(async () => {
    const fx = await buildFixtures();
    engine = new V8Engine({ workers: 1, onLog: () => {} });
    good = await fixedServer(200);
    bad = await fixedServer(503);
    slow = await fixedServer(200, 3_000);
    // An L7 chain so requests are parsed (outlier detection works per request there).
    const chain = await engine.createChain([bindingFromArtifact(fx.hello, { config: { retryOn: [599] } })]);
    const timeoutChain = await engine.createChain([bindingFromArtifact(fx.hello, { config: { retryOn: [599] } })]);
    proxy = new NodeProxy({
      listeners: [
        { name: 'pair', direction: 'outbound', address: '127.0.0.1', port: 0, target: { address: '10.96.5.1', port: 80 } },
        { name: 'slow', direction: 'outbound', address: '127.0.0.1', port: 0, target: { address: '10.96.5.2', port: 80 } },
      ],
      state: staticState({
        routes: [
          { address: '10.96.5.1', port: 80, service: 'pair.default', endpoints: [['127.0.0.1', good.port], ['127.0.0.1', bad.port]], chain, outlier: { consecutive5xx: 3, baseEjectionMs: 60_000, maxEjectionPercent: 50 } },
          { address: '10.96.5.2', port: 80, service: 'slow.default', endpoints: [['127.0.0.1', slow.port]], chain: timeoutChain, requestTimeoutMs: 300 },
        ],
      }),
      telemetry: recordingTelemetry(),
    });
    await proxy.start();
    for (const [n, a] of Object.entries(proxy.addresses())) ports[n] = a.port;
  });

  afterAll(async () => {
    await proxy?.close(100);
    await engine?.close();
    await Promise.all([good?.close(), bad?.close(), slow?.close()]);
  });

  it('ejects an endpoint after consecutive 5xx and sends the rest to the healthy one', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await get(ports.pair!, `/r${i}`)).status);
    // Round robin alternates until the bad endpoint's third 503 ejects it.
    expect(bad.hits).toBe(3);
    expect(statuses.filter((s) => s === 503)).toHaveLength(3);
    expect(statuses.slice(-20).every((s) => s === 200)).toBe(true);
  });

  it('answers 504 when the upstream takes longer than the request timeout', async () => {
    const r = await get(ports.slow!, '/slow');
    expect(r.status).toBe(504);
    expect(r.headers['x-ambit-upstream-error']).toBe('timeout');
  });
});
