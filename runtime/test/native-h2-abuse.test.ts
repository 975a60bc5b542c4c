/**
 * HTTP/2 abuse against the native data path, over real sockets with a raw frame client
 * (support/h2frames.ts): rapid reset, a CONTINUATION flood, a SETTINGS flood, a slow request
 * body, requests cancelled in flight, and the limits they run into (100 concurrent streams, the header list size, the
 * request timeout). The proxy runs in its own process (`ambit run`), so its resident memory is
 * measured alone; each attack is bounded in count and time, and another client is served
 * during and after it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import http2 from 'node:http2';
import { ERROR, FLAG, FRAME, RawH2, frame, headerBlock, request, rst, serverSettings, settings } from './support/h2frames.js';
import { nativePathSkip } from './support/native-path.js';
import { startProxyProcess, watchRss, type ProxyProcess } from './support/proxy-process.js';
import { httpUpstream, type Upstream } from './support/upstreams.js';

const MiB = 1024 * 1024;
/** How much the proxy's resident memory may grow during one attack. */
const GROWTH_BOUND = 48 * MiB;
const MAX_HEADER_BYTES = 16_384;
const REQUEST_TIMEOUT_MS = 1_500;

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host: 'api.test' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${path} within 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Another client: an HTTP/1.1 request and an HTTP/2 one on fresh connections; both must get 200. */
async function bystander(port: number, tag: string): Promise<number[]> {
  const h1 = await get(port, `/bystander/${tag}`);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  try {
    const h2 = await new Promise<number>((resolve, reject) => {
      const s = session.request({ ':path': `/bystander/${tag}/h2`, ':authority': 'api.test' });
      let status = 0;
      s.on('response', (h) => { status = Number(h[':status']); });
      s.on('data', () => {});
      s.on('end', () => resolve(status));
      s.on('error', reject);
      s.setTimeout(10_000, () => s.close());
      s.end();
    });
    return [h1, h2];
  } finally {
    session.close();
  }
}

interface H2Reply { status: number; headers: http2.IncomingHttpHeaders }

/** One request on `session` (Node's HTTP/2 client); `body` writes the request body, else none. */
function h2request(session: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}, body?: (s: http2.ClientHttp2Stream) => Promise<void>): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':path': path, ':authority': 'api.test', ...headers }, { endStream: body === undefined });
    let reply: H2Reply | undefined;
    s.on('response', (h) => { reply = { status: Number(h[':status']), headers: h }; });
    s.on('data', () => {});
    s.on('close', () => (reply ? resolve(reply) : reject(new Error(`${path}: closed without a response (code ${s.rstCode})`))));
    s.on('error', () => {});
    s.setTimeout(15_000, () => s.close());
    if (body) void body(s);
  });
}

describe.skipIf(nativePathSkip)('HTTP/2 abuse against the native data path', () => {
  let upstream: Upstream;
  let proxy: ProxyProcess;

  beforeAll(async () => {
    upstream = await httpUpstream('api');
    proxy = await startProxyProcess(`
node: test-node
trustDomain: mesh.test
proxy:
  engine: wasmtime
  dataPath: native
  native: { threads: 2 }
  wasmtime: { threads: 1 }
  limits: { maxHeaderBytes: ${MAX_HEADER_BYTES} }
services:
  - name: api
    namespace: test
    vip: 10.96.21.1
    requestTimeoutMs: ${REQUEST_TIMEOUT_MS}
    ports: [{ port: 80, targetPort: ${upstream.port}, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
`, '10.96.21.1:80');
    // Warm: connections, pools and allocator arenas exist before memory is compared.
    for (let i = 0; i < 3; i++) expect(await bystander(proxy.port, `warm-${i}`)).toEqual([200, 200]);
  }, 300_000);

  afterAll(async () => {
    await proxy?.close();
    await upstream?.close();
  });

  it('advertises 100 concurrent streams and the header list size, and refuses stream 101', async () => {
    const c = await RawH2.connect(proxy.port);
    try {
      expect(await c.until((f) => f.some((x) => x.type === FRAME.SETTINGS && !(x.flags & FLAG.ACK)))).toBe(true);
      const s = serverSettings(c.frames);
      expect(s.get(0x3)).toBe(100); // SETTINGS_MAX_CONCURRENT_STREAMS
      expect(s.get(0x6)).toBe(MAX_HEADER_BYTES); // SETTINGS_MAX_HEADER_LIST_SIZE
      // Wait for the server's ACK of our SETTINGS: its limits apply from here on.
      expect(await c.until((f) => f.some((x) => x.type === FRAME.SETTINGS && (x.flags & FLAG.ACK) !== 0))).toBe(true);
      // 101 requests the upstream answers only after a while: 100 are served, one is refused.
      const batch = Buffer.concat(Array.from({ length: 101 }, (_, i) => request(2 * i + 1, `/slow/1000?n=${i}`)));
      expect(await c.write(batch)).toBe(true);
      const refused = (f: typeof c.frames) => f.filter((x) => x.type === FRAME.RST_STREAM && x.payload.readUInt32BE(0) === ERROR.REFUSED_STREAM).length;
      const answered = (f: typeof c.frames) => new Set(f.filter((x) => x.type === FRAME.HEADERS).map((x) => x.stream)).size;
      expect(await c.until((f) => refused(f) + answered(f) >= 101, 20_000)).toBe(true);
      expect(refused(c.frames)).toBe(1);
      expect(answered(c.frames)).toBe(100);
    } finally {
      c.close();
    }
  }, 60_000);

  it('answers a header list over the limit with 431 without going upstream, and keeps the connection', async () => {
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
    session.on('error', () => {});
    try {
      const big = await h2request(session, '/too-big', { 'x-big': 'a'.repeat(MAX_HEADER_BYTES) });
      expect(big.status).toBe(431);
      expect((await h2request(session, '/after-too-big')).status).toBe(200);
    } finally {
      session.close();
    }
    expect(upstream.seen.some((s) => s.path === '/too-big')).toBe(false);
    expect(upstream.seen.some((s) => s.path === '/after-too-big')).toBe(true);
  }, 30_000);

  it('bounds rapid reset (HEADERS + RST_STREAM): the connection is closed, memory stays bounded', async () => {
    const pairs = 20_000;
    const before = upstream.seen.length;
    let sent = 0;
    const during = bystander(proxy.port, 'rapid-reset');
    const { result: c, base, peak } = await watchRss(proxy, async () => {
      const c = await RawH2.connect(proxy.port);
      // Paced a little (10 pairs, then a turn of the event loop), so that the proxy has read
      // everything sent when it closes, and its GOAWAY is not lost to a TCP reset.
      for (let i = 0; i < pairs && !c.closed; i += 10) {
        const batch = Buffer.concat(Array.from({ length: 10 }, (_, k) => Buffer.concat([request(2 * (i + k) + 1, `/rr/${i + k}`), rst(2 * (i + k) + 1)])));
        if (!(await c.write(batch))) break;
        sent = i + 10;
        await new Promise((r) => setTimeout(r, 2));
      }
      await c.until(() => c.closed, 5_000);
      return c;
    });
    const closedByProxy = c.closed;
    c.close();
    expect(await during).toEqual([200, 200]);
    expect(closedByProxy, `sent ${sent} pairs`).toBe(true);
    expect(sent).toBeLessThan(pairs);
    // Its GOAWAY says why, unless a TCP reset (the proxy closing with our last frames unread) ate it.
    const goaway = c.goaway();
    if (goaway) expect(goaway.code).toBe(ERROR.ENHANCE_YOUR_CALM);
    // Few of the reset requests went upstream (h2 counts resets of streams not yet accepted).
    expect(upstream.seen.length - before, `sent ${sent} pairs`).toBeLessThan(100);
    expect(peak - base, `RSS ${(base / MiB).toFixed(1)} → ${(peak / MiB).toFixed(1)} MiB`).toBeLessThan(GROWTH_BOUND);
    expect(proxy.alive()).toBe(true);
    expect(await bystander(proxy.port, 'after-rapid-reset')).toEqual([200, 200]);
  }, 60_000);

  it('bounds resets of accepted streams (requests cancelled in flight): the connection is closed', async () => {
    const rounds = 100;
    const perRound = 50;
    const before = upstream.seen.length;
    let sent = 0;
    const during = bystander(proxy.port, 'cancel-in-flight');
    const { result: c, base, peak } = await watchRss(proxy, async () => {
      const c = await RawH2.connect(proxy.port);
      await c.until((f) => f.some((x) => x.type === FRAME.SETTINGS && (x.flags & FLAG.ACK) !== 0));
      // Each round: 50 requests the upstream answers after 300 ms, reset once they are in flight.
      for (let r = 0; r < rounds && !c.closed; r++) {
        const ids = Array.from({ length: perRound }, (_, k) => 2 * (r * perRound + k) + 1);
        if (!(await c.write(Buffer.concat(ids.map((id) => request(id, `/slow/300?cancel=${id}`)))))) break;
        await new Promise((res) => setTimeout(res, 50));
        if (!(await c.write(Buffer.concat(ids.map((id) => rst(id)))))) break;
        sent += perRound;
        await new Promise((res) => setTimeout(res, 10));
      }
      await c.until(() => c.closed, 5_000);
      return c;
    });
    const closedByProxy = c.closed;
    c.close();
    expect(await during).toEqual([200, 200]);
    expect(closedByProxy, `sent ${sent} cancelled requests`).toBe(true);
    expect(sent).toBeLessThan(rounds * perRound);
    expect(upstream.seen.filter((s) => s.path.includes('cancel=')).length).toBeLessThanOrEqual(sent);
    expect(upstream.seen.length - before).toBeLessThan(1_000);
    expect(peak - base, `RSS ${(base / MiB).toFixed(1)} → ${(peak / MiB).toFixed(1)} MiB`).toBeLessThan(GROWTH_BOUND);
    expect(proxy.alive()).toBe(true);
    expect(await bystander(proxy.port, 'after-cancel-in-flight')).toEqual([200, 200]);
  }, 90_000);

  it.each([
    ['1 KiB fragments (the header list size)', 1000],
    ['empty fragments (the count of CONTINUATION frames)', 0],
  ])('bounds a CONTINUATION flood of %s: the connection is closed, memory stays bounded', async (_what, size) => {
    const frames = 100_000;
    let sent = 0;
    const during = bystander(proxy.port, `continuation-${size}`);
    const { result: c, base, peak } = await watchRss(proxy, async () => {
      const c = await RawH2.connect(proxy.port);
      const start = headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', `/continuation/${size}`], [':authority', 'api.test']]);
      await c.write(frame(FRAME.HEADERS, 0, 1, start));
      // END_HEADERS never comes.
      const fragment = size > 0 ? headerBlock([['x-flood', 'f'.repeat(size)]]) : Buffer.alloc(0);
      const batch = Buffer.concat(Array.from({ length: 100 }, () => frame(FRAME.CONTINUATION, 0, 1, fragment)));
      while (sent < frames && !c.closed) {
        if (!(await c.write(batch))) break;
        sent += 100;
        await new Promise((r) => setTimeout(r, 1));
      }
      await c.until(() => c.closed, 5_000);
      return c;
    });
    const closedByProxy = c.closed;
    c.close();
    expect(await during).toEqual([200, 200]);
    expect(closedByProxy, `sent ${sent} CONTINUATION frames`).toBe(true);
    expect(sent).toBeLessThan(frames);
    expect(upstream.seen.some((s) => s.path.startsWith('/continuation/'))).toBe(false);
    expect(peak - base, `RSS ${(base / MiB).toFixed(1)} → ${(peak / MiB).toFixed(1)} MiB`).toBeLessThan(GROWTH_BOUND);
    expect(proxy.alive()).toBe(true);
    expect(await bystander(proxy.port, `after-continuation-${size}`)).toEqual([200, 200]);
  }, 60_000);

  it('bounds a SETTINGS flood whose ACKs are not read: the proxy stops reading, memory stays bounded, the connection still serves', async () => {
    const count = 2_000_000;
    const batch = 10_000;
    let sent = 0;
    const during = bystander(proxy.port, 'settings');
    const { result: c, base, peak } = await watchRss(proxy, async () => {
      const c = await RawH2.connect(proxy.port);
      await c.until((f) => f.some((x) => x.type === FRAME.SETTINGS && (x.flags & FLAG.ACK) !== 0));
      // Not reading while flooding: each SETTINGS needs an ACK, which the proxy cannot send.
      c.socket.pause();
      const frames = Buffer.concat(Array.from({ length: batch }, () => settings([[0x4, 65_535]]))); // INITIAL_WINDOW_SIZE, unchanged
      while (sent < count && !c.closed) {
        // A write that does not drain within 2 s: the proxy has stopped reading.
        if (!(await c.write(frames, 2_000)) || c.socket.writableLength > 0) break;
        sent += batch;
      }
      return c;
    });
    expect(await during).toEqual([200, 200]);
    expect(sent, 'the proxy kept reading SETTINGS whose ACKs could not be written').toBeLessThan(count);
    expect(peak - base, `RSS ${(base / MiB).toFixed(1)} → ${(peak / MiB).toFixed(1)} MiB`).toBeLessThan(GROWTH_BOUND);
    expect(proxy.alive()).toBe(true);
    // Reading again: the ACKs come, and the connection serves a request.
    c.socket.resume();
    expect(await c.until((f) => f.filter((x) => x.type === FRAME.SETTINGS && (x.flags & FLAG.ACK) !== 0).length > sent, 20_000)).toBe(true);
    await c.write(request(1, '/after-settings-flood'));
    expect(await c.until((f) => f.some((x) => x.type === FRAME.HEADERS && x.stream === 1), 20_000)).toBe(true);
    c.close();
    expect(upstream.seen.some((s) => s.path === '/after-settings-flood')).toBe(true);
    expect(await bystander(proxy.port, 'after-settings')).toEqual([200, 200]);
  }, 90_000);

  it('ends a slow request body at the service request timeout (504) and serves others meanwhile', async () => {
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
    session.on('error', () => {});
    try {
      const started = Date.now();
      // A 1 MB body announced, sent one byte every 100 ms (at most 100 of them).
      const slow = h2request(session, '/slow-body', { ':method': 'POST', 'content-length': String(1_000_000) }, async (s) => {
        let answered = false;
        s.once('response', () => { answered = true; });
        for (let i = 0; i < 100 && !s.closed && !answered; i++) {
          if (s.writable) s.write('x');
          await new Promise((r) => setTimeout(r, 100));
        }
      });
      expect(await bystander(proxy.port, 'slow-body')).toEqual([200, 200]);
      const r = await slow;
      const elapsed = Date.now() - started;
      expect(r.status).toBe(504);
      expect(r.headers['x-ambit-upstream-error']).toBe('timeout');
      expect(elapsed).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
      expect(elapsed).toBeLessThan(10_000);
    } finally {
      session.close();
    }
    expect(await bystander(proxy.port, 'after-slow-body')).toEqual([200, 200]);
  }, 30_000);
});
