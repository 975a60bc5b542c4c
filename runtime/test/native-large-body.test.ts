/**
 * A 200 MB download through the native data path's L7 pipeline (a `protocol: http` port), with
 * the proxy in its own process (`ambit run`) and its resident memory sampled during the
 * transfer. The upstream writes as fast as the proxy takes it; the client stops reading for a
 * while in the middle, so a proxy that buffered instead of passing backpressure on would grow
 * by up to the whole body. Over HTTP/1.1, and over HTTP/2 (h2c) to the same HTTP/1.1 upstream,
 * which only the L7 pipeline can do.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { nativePathSkip } from './support/native-path.js';
import { startProxyProcess, watchRss, type ProxyProcess } from './support/proxy-process.js';

const MiB = 1024 * 1024;
const SIZE = 200 * 1000 * 1000;
/** How much the proxy's resident memory may grow while the body passes through it. */
const GROWTH_BOUND = 32 * MiB;
/** How long the client stops reading, once a quarter of the body has arrived. */
const PAUSE_MS = 1_500;

/** Serves SIZE bytes with content-length, in 64 KiB chunks, respecting backpressure. */
async function bulkUpstream(): Promise<{ port: number; close(): Promise<void> }> {
  const chunk = Buffer.alloc(64 * 1024, 'z');
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(SIZE) });
    let left = SIZE;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { res.once('drain', pump); return; }
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

/** Reads the body to its end, pausing once; answers the bytes read. */
function drain(body: Readable): Promise<number> {
  return new Promise((resolve, reject) => {
    let got = 0;
    let paused = false;
    body.on('data', (d: Buffer) => {
      got += d.length;
      if (!paused && got >= SIZE / 4) {
        paused = true;
        body.pause();
        setTimeout(() => body.resume(), PAUSE_MS);
      }
    });
    body.on('end', () => resolve(got));
    body.on('error', reject);
  });
}

describe.skipIf(nativePathSkip)('a 200 MB download through the native L7 path', () => {
  let upstream: Awaited<ReturnType<typeof bulkUpstream>>;
  let proxy: ProxyProcess;

  beforeAll(async () => {
    upstream = await bulkUpstream();
    proxy = await startProxyProcess(`
node: test-node
trustDomain: mesh.test
proxy:
  engine: wasmtime
  dataPath: native
  native: { threads: 2 }
  wasmtime: { threads: 1 }
services:
  - name: bulk
    namespace: test
    vip: 10.96.22.1
    requestTimeoutMs: 0
    ports: [{ port: 80, targetPort: ${upstream.port}, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
`, '10.96.22.1:80');
    // Warm the proxy (pools, allocator arenas) with a first, unmeasured download.
    await new Promise<void>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: proxy.port, path: '/warm', headers: { host: 'bulk.test' }, agent: false }, (res) => { res.resume(); res.on('end', () => resolve()); }).on('error', reject);
    });
  }, 300_000);

  afterAll(async () => {
    await proxy?.close();
    await upstream?.close();
  });

  it('over HTTP/1.1, with the proxy\'s memory bounded', async () => {
    const { result: bytes, base, peak } = await watchRss(proxy, () => new Promise<number>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: proxy.port, path: '/h1', headers: { host: 'bulk.test' }, agent: false }, (res) => {
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-length']).toBe(String(SIZE));
        drain(res).then(resolve, reject);
      });
      req.setTimeout(120_000, () => req.destroy(new Error('no progress for 120 s')));
      req.on('error', reject);
    }));
    expect(bytes).toBe(SIZE);
    expect(peak - base, `RSS ${(base / MiB).toFixed(1)} → ${(peak / MiB).toFixed(1)} MiB`).toBeLessThan(GROWTH_BOUND);
  }, 180_000);

  it('over HTTP/2 (h2c) to the HTTP/1.1 upstream, with the proxy\'s memory bounded', async () => {
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
    session.on('error', () => {});
    try {
      const { result: bytes, base, peak } = await watchRss(proxy, () => new Promise<number>((resolve, reject) => {
        const s = session.request({ ':path': '/h2', ':authority': 'bulk.test' });
        s.on('response', (h) => { expect(h[':status']).toBe(200); });
        s.setTimeout(120_000, () => s.close());
        drain(s).then(resolve, reject);
        s.end();
      }));
    expect(bytes).toBe(SIZE);
      expect(peak - base, `RSS ${(base / MiB).toFixed(1)} → ${(peak / MiB).toFixed(1)} MiB`).toBeLessThan(GROWTH_BOUND);
    } finally {
      session.close();
    }
  }, 180_000);
});
