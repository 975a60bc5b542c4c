/**
 * HBONE over real TLS 1.3 and HTTP/2 on loopback: the server delivering CONNECT tunnels
 * to a TCP echo workload, the client multiplexing them, and every refusal the issue asks
 * for. Certificates are made here with openssl (EC P-256, SPIFFE URI SANs).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import {
  connectTcp, expectSpiffeId, expectTrustDomain, HboneClient, HboneError, HboneServer, parseAuthority, parseSpiffeId,
  parseSubjectAltNames, REASON_HEADER,
  type HboneServerEvent, type TlsMaterial, type TunnelDecision, type TunnelRequest,
} from '../src/hbone/index.js';
import { createPki, type Pem, type Pki, type TestCa } from './support/hbone/pki.js';
import {
  closedPort, echoOnce, echoServer, EOF_MARK, pumpThrough, readAll, recordingTap, resettingServer, silentServer, until, within, type Listening,
} from './support/hbone/net.js';

const A = 'spiffe://mesh.test/ns/shop/sa/frontend';
const B = 'spiffe://mesh.test/ns/shop/sa/cart';
const NODE = 'spiffe://mesh.test/ns/ambit-system/sa/node-2';
const NODE_ROTATED = 'spiffe://mesh.test/ns/ambit-system/sa/node-2-rotated';
const WAIT = 5_000;

let pki: Pki;
let meshCa: TestCa;
let otherCa: TestCa;
const leaves: Record<string, Pem> = {};
let echo: Listening & { connections: number; open: number };

function material(pem: Pem, ca: TestCa = meshCa): TlsMaterial {
  return { key: pem.key, cert: pem.cert, ca: ca.cert };
}

interface TestNode {
  server: HboneServer;
  port: number;
  events: HboneServerEvent[];
  requests: TunnelRequest[];
  /** What the server presents; swap it to rotate. */
  creds: { current: TlsMaterial };
  policy: { decide: (r: TunnelRequest) => TunnelDecision | Promise<TunnelDecision> };
}

const cleanups: Array<() => Promise<void>> = [];

async function startNode(options: { idleTimeoutMs?: number } = {}): Promise<TestNode> {
  const events: HboneServerEvent[] = [];
  const requests: TunnelRequest[] = [];
  const creds = { current: material(leaves.node!) };
  const policy: TestNode['policy'] = { decide: () => ({ allow: true }) };
  const server = new HboneServer({
    credentials: () => creds.current,
    onTunnel: (r) => { requests.push(r); return policy.decide(r); },
    onEvent: (e) => events.push(e),
    upstreamConnectTimeoutMs: 2_000,
    ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
  });
  const addr = await server.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(() => server.close());
  return { server, port: addr.port, events, requests, creds, policy };
}

function startClient(byIdentity: Record<string, TlsMaterial>, options: { idleTimeoutMs?: number } = {}): HboneClient {
  const client = new HboneClient({
    credentials: (id) => {
      const m = byIdentity[id];
      if (!m) throw new Error(`no certificate for ${id}`);
      return m;
    },
    connectTimeoutMs: 3_000,
    ...options,
  });
  cleanups.push(() => client.close());
  return client;
}

const local = (port: number) => ({ address: '127.0.0.1', port });

function refusals(node: TestNode): string[] {
  return node.events.flatMap((e) => (e.type === 'connection-refused' ? [e.reason] : []));
}

async function rejection(p: Promise<unknown>): Promise<HboneError> {
  const e = await within(p.then(() => { throw new Error('expected a rejection'); }, (err: unknown) => err), WAIT, 'rejection');
  expect(e).toBeInstanceOf(HboneError);
  return e as HboneError;
}

/** A raw TLS attempt against the server; resolves with the error code, or 'closed' / 'open'. */
function rawTls(port: number, options: tls.ConnectionOptions): Promise<string> {
  return within(new Promise<string>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: meshCa.cert, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, ...options });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.on('close', () => resolve('closed'));
    // In TLS 1.3 the server judges the client certificate after the client's Finished: wait for its verdict.
    s.on('secureConnect', () => { setTimeout(() => { resolve('open'); s.destroy(); }, 1_000); });
    s.resume();
  }), WAIT, 'raw TLS attempt');
}

beforeAll(async () => {
  pki = createPki();
  meshCa = pki.ca('mesh');
  otherCa = pki.ca('other');
  leaves.a = pki.leaf(meshCa, [A], 'a');
  leaves.aRotated = pki.leaf(meshCa, [A], 'a-rotated');
  leaves.b = pki.leaf(meshCa, [B], 'b');
  leaves.node = pki.leaf(meshCa, [NODE], 'node');
  leaves.nodeRotated = pki.leaf(meshCa, [NODE_ROTATED], 'node-rotated');
  leaves.aFromOtherCa = pki.leaf(otherCa, [A], 'a-other');
  leaves.noUri = pki.leaf(meshCa, [], 'no-uri');
  leaves.twoUris = pki.leaf(meshCa, [A, 'spiffe://mesh.test/ns/x/sa/y'], 'two-uris');
  echo = await echoServer();
});

afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => within(c(), WAIT, 'cleanup')));
});

afterAll(async () => {
  await echo?.close();
  pki?.cleanup();
});

describe('hbone: helpers', () => {
  it('parses CONNECT authorities: IPv4 and [IPv6] with a port, nothing else', () => {
    expect(parseAuthority('10.0.0.1:8080')).toEqual({ address: '10.0.0.1', port: 8080 });
    expect(parseAuthority('[fd00::1]:80')).toEqual({ address: 'fd00::1', port: 80 });
    for (const bad of ['example.com:80', '10.0.0.1', '10.0.0.1:0', '10.0.0.1:65536', '10.0.0.1:+80', 'fd00::1:80', '[fd00::1]', '[fe80::1%eth0]:80', '[10.0.0.1]:80', '']) {
      expect(parseAuthority(bad), bad).toBeUndefined();
    }
  });

  it('parses SPIFFE IDs and SAN lists', () => {
    expect(parseSpiffeId(A)).toEqual({ id: A, trustDomain: 'mesh.test', path: '/ns/shop/sa/frontend', namespace: 'shop', serviceAccount: 'frontend' });
    for (const bad of ['spiffe://Mesh.test/x', 'spiffe://mesh.test/a//b', 'spiffe://mesh.test/a/../b', 'spiffe://mesh.test:443/x', 'spiffe://mesh.test/x?y', 'https://mesh.test/x', 'spiffe:///x']) {
      expect(parseSpiffeId(bad), bad).toBeUndefined();
    }
    expect(parseSubjectAltNames(`DNS:a.b, URI:${A}, URI:"http://x/a,b"`)).toEqual([
      { type: 'DNS', value: 'a.b' }, { type: 'URI', value: A }, { type: 'URI', value: 'http://x/a,b' },
    ]);
    expect(expectTrustDomain('mesh.test')(NODE)).toBe(true);
    expect(expectTrustDomain('other.test')(NODE)).toBe(false);
  });
});

describe('hbone: tunnels', () => {
  it('carries two concurrent tunnels from one identity over ONE TLS connection, and the server sees that identity', async () => {
    const node = await startNode();
    const client = startClient({ [A]: material(leaves.a!) });
    const open = () => client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port), expectServer: expectSpiffeId(NODE) });
    const [t1, t2] = await within(Promise.all([open(), open()]), WAIT, 'two tunnels');
    const one = 'one:'.repeat(20_000);
    const two = 'two:'.repeat(20_000);
    const [r1, r2] = await within(Promise.all([echoOnce(t1, one), echoOnce(t2, two)]), WAIT, 'echoes');
    expect(r1).toBe(one);
    expect(r2).toBe(two);

    expect(t1.hbone.serverIdentity).toBe(NODE);
    expect(t1.hbone.tls.version).toBe('TLSv1.3');
    const stats = node.server.stats();
    expect(stats.connectionsTotal).toBe(1);
    expect(stats.connections).toBe(1);
    expect(stats.tunnels).toBe(2);
    expect(client.stats()).toMatchObject({ sessions: 1, sessionsTotal: 1, tunnels: 2 });
    expect(node.requests.map((r) => r.peerIdentity)).toEqual([A, A]);
    expect(node.requests[0]!.peer).toMatchObject({ trustDomain: 'mesh.test', namespace: 'shop', serviceAccount: 'frontend' });
    expect(node.requests[0]!.authority).toEqual(local(echo.port));
    expect(node.requests[0]!.tls.version).toBe('TLSv1.3');
    expect(node.requests[0]!.tls.cipher).toMatch(/^TLS_/);
    // Both CONNECTs came from the same TCP connection.
    expect(node.requests[0]!.source).toEqual(node.requests[1]!.source);

    t1.end();
    t2.end();
    await within(Promise.all([readAll(t1), readAll(t2)]), WAIT, 'tunnel ends');
    await until(() => node.events.filter((e) => e.type === 'tunnel-closed').length === 2, WAIT, 'tunnel-closed events');
    const closed = node.events.filter((e) => e.type === 'tunnel-closed');
    for (const e of closed) {
      expect(e).toMatchObject({ peerIdentity: A, authority: `127.0.0.1:${echo.port}`, bytesFromPeer: one.length });
      expect(e.type === 'tunnel-closed' && e.error).toBeFalsy();
    }
    expect(node.server.stats().bytesFromPeers).toBe(one.length + two.length);
  });

  it('moves megabytes both ways across many concurrent tunnels on one session (flow control, backpressure)', async () => {
    const node = await startNode();
    const client = startClient({ [A]: material(leaves.a!) });
    const size = 2 * 1024 * 1024 + 123;
    // Many more bytes in flight than the flow-control windows: this stalled with 16 MiB session windows.
    const count = 32;
    const tunnels = await within(Promise.all(Array.from({ length: count }, () =>
      client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }))), WAIT, 'open tunnels');
    const results = await within(Promise.all(tunnels.map((t) => pumpThrough(t, size, EOF_MARK))), 30_000, 'pump');
    for (const r of results) {
      // The echo adds its end-of-input mark after the payload.
      expect(r.receivedBytes).toBe(size + EOF_MARK.length);
      expect(r.received).toBe(r.sent);
    }
    expect(node.server.stats().connectionsTotal).toBe(1);
    await until(() => node.server.stats().tunnels === 0, WAIT, 'all tunnels closed');
    expect(node.server.stats().bytesFromPeers).toBe(count * size);
    expect(node.server.stats().bytesToPeers).toBe(count * (size + EOF_MARK.length));
  });

  it('carries a half-close: the client ends its side and still receives the rest', async () => {
    const node = await startNode();
    const client = startClient({ [A]: material(leaves.a!) });
    const t = await within(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }), WAIT, 'open');
    const all = readAll(t);
    t.write('hello, ');
    t.end('workload');
    // The workload only writes EOF_MARK after it saw our end; we still read it.
    expect(await within(all, WAIT, 'read to the end')).toBe(`hello, workload${EOF_MARK}`);
    await until(() => node.events.some((e) => e.type === 'tunnel-closed'), WAIT, 'tunnel-closed');
    expect(node.events.find((e) => e.type === 'tunnel-closed')).toMatchObject({
      bytesFromPeer: 'hello, workload'.length, bytesToPeer: `hello, workload${EOF_MARK}`.length,
    });
  });

  it('crosses the wire encrypted: the payload never appears in the bytes on the TCP connection', async () => {
    const node = await startNode();
    const tap = await recordingTap(node.port);
    cleanups.push(() => tap.close());
    const client = startClient({ [A]: material(leaves.a!) });
    const t = await within(client.open({ sourceIdentity: A, node: local(tap.port), target: local(echo.port) }), WAIT, 'open via tap');
    const marker = 'PLAINTEXT-MARKER-7f3a9c';
    const payload = `${marker} `.repeat(200);
    expect(await within(echoOnce(t, payload), WAIT, 'echo')).toBe(payload);
    t.end();
    await within(readAll(t), WAIT, 'end');
    const up = Buffer.concat(tap.toServer);
    const down = Buffer.concat(tap.toClient);
    expect(tap.connections).toBe(1);
    expect(up.length).toBeGreaterThan(payload.length);
    expect(down.length).toBeGreaterThan(payload.length);
    expect(up[0]).toBe(0x16); // a TLS handshake record opens the connection
    expect(up.includes(marker)).toBe(false);
    expect(down.includes(marker)).toBe(false);
    expect(up.includes('CONNECT')).toBe(false);
  });

  it('re-establishes the session after the server closed an idle one (GOAWAY)', async () => {
    const node = await startNode({ idleTimeoutMs: 100 });
    const client = startClient({ [A]: material(leaves.a!) });
    const target = local(echo.port);
    const t1 = await within(client.open({ sourceIdentity: A, node: local(node.port), target }), WAIT, 'first open');
    expect(await within(echoOnce(t1, 'first'), WAIT, 'echo 1')).toBe('first');
    t1.end();
    await within(readAll(t1), WAIT, 'end 1');
    await until(() => client.stats().sessions === 0, WAIT, 'the idle session is closed');
    const t2 = await within(client.open({ sourceIdentity: A, node: local(node.port), target }), WAIT, 'second open');
    expect(await within(echoOnce(t2, 'second'), WAIT, 'echo 2')).toBe('second');
    t2.end();
    expect(client.stats().sessionsTotal).toBe(2);
    expect(node.server.stats().connectionsTotal).toBe(2);
  });

  it('rotates certificates without a restart: new sessions use the new ones, open tunnels keep going', async () => {
    const node = await startNode();
    const byIdentity = { [A]: material(leaves.a!), [B]: material(leaves.b!) };
    const client = startClient(byIdentity);
    const t1 = await within(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }), WAIT, 'open A');
    expect(t1.hbone.serverIdentity).toBe(NODE);

    // The server's certificate rotates: the next connection (B's) gets the new one.
    node.creds.current = material(leaves.nodeRotated!);
    const t2 = await within(client.open({ sourceIdentity: B, node: local(node.port), target: local(echo.port) }), WAIT, 'open B');
    expect(t2.hbone.serverIdentity).toBe(NODE_ROTATED);

    // A's certificate rotates: a new session for A, while the tunnel on the old one still works.
    byIdentity[A] = material(leaves.aRotated!);
    const t3 = await within(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }), WAIT, 'open A rotated');
    expect(client.stats().sessionsTotal).toBe(3);
    expect(await within(echoOnce(t1, 'still here'), WAIT, 'old tunnel')).toBe('still here');
    expect(await within(echoOnce(t3, 'new session'), WAIT, 'new tunnel')).toBe('new session');
    expect(node.requests.map((r) => r.peerIdentity)).toEqual([A, B, A]);
    // The drained session closes once its last tunnel is done.
    t1.end();
    await within(readAll(t1), WAIT, 'old tunnel end');
    await until(() => client.stats().sessions === 2, WAIT, 'the drained session closes');
    t2.end();
    t3.end();
  });
});

describe('hbone: refusals', () => {
  it('refuses a client certificate from another CA', async () => {
    const node = await startNode();
    const client = startClient({ [A]: material(leaves.aFromOtherCa!) });
    const e = await rejection(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }));
    expect(e.code).toBe('tls');
    expect(e.message).toMatch(/refused the client certificate/);
    await until(() => refusals(node).length > 0, WAIT, 'refusal logged');
    expect(refusals(node)[0]).toMatch(/client certificate was rejected: not issued by a CA in the trust bundle \((UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\)/);
    expect(node.server.stats()).toMatchObject({ connectionsTotal: 0, connectionsRefused: 1 });
    expect(node.requests).toEqual([]);
  });

  it('refuses a client without a certificate', async () => {
    const node = await startNode();
    const outcome = await rawTls(node.port, {});
    expect(outcome).not.toBe('open');
    await until(() => refusals(node).length > 0, WAIT, 'refusal logged');
    expect(refusals(node)[0]).toMatch(/the client presented no certificate/);
    expect(node.server.stats().connectionsTotal).toBe(0);
  });

  it('refuses a TLS 1.2-only client', async () => {
    const node = await startNode();
    const outcome = await rawTls(node.port, { key: leaves.a!.key, cert: leaves.a!.cert, maxVersion: 'TLSv1.2' });
    expect(outcome).toMatch(/ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION|ERR_SSL_UNSUPPORTED_PROTOCOL/);
    await until(() => refusals(node).length > 0, WAIT, 'refusal logged');
    expect(refusals(node)[0]).toMatch(/only TLS 1\.3 is accepted/);
  });

  it('refuses client certificates without exactly one SPIFFE URI SAN', async () => {
    const node = await startNode();
    const client = startClient({ [A]: material(leaves.noUri!), [B]: material(leaves.twoUris!) });
    for (const id of [A, B]) {
      const e = await rejection(client.open({ sourceIdentity: id, node: local(node.port), target: local(echo.port) }));
      expect(e.code).toBe('tls');
    }
    await until(() => refusals(node).length === 2, WAIT, 'refusals logged');
    expect(refusals(node)[0]).toMatch(/no usable SPIFFE ID: .*carries no URI SAN/);
    expect(refusals(node)[1]).toMatch(/no usable SPIFFE ID: the certificate carries 2 URI SANs/);
  });

  it('rejects a server whose SPIFFE ID is not the expected one', async () => {
    const node = await startNode();
    const client = startClient({ [A]: material(leaves.a!) });
    const e = await rejection(client.open({
      sourceIdentity: A, node: local(node.port), target: local(echo.port), expectServer: expectSpiffeId('spiffe://mesh.test/ns/ambit-system/sa/node-9'),
    }));
    expect(e.code).toBe('server-identity');
    expect(e.message).toContain(NODE);
    expect(node.requests).toEqual([]);
    // The same session serves a caller that does expect this server.
    const t = await within(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port), expectServer: expectTrustDomain('mesh.test') }), WAIT, 'open');
    expect(await within(echoOnce(t, 'ok'), WAIT, 'echo')).toBe('ok');
    t.end();
  });

  it('surfaces a policy denial as a rejection with the status and reason', async () => {
    const node = await startNode();
    node.policy.decide = (r) => (r.peerIdentity === A ? { allow: false, status: 403, reason: 'frontend may not reach this port' } : { allow: true });
    const client = startClient({ [A]: material(leaves.a!) });
    const before = echo.connections;
    const e = await rejection(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }));
    expect(e).toMatchObject({ code: 'refused', status: 403, reason: 'frontend may not reach this port' });
    expect(e.message).toMatch(/refused the tunnel to 127\.0\.0\.1:\d+: 403 frontend may not reach this port/);
    expect(echo.connections).toBe(before);
    expect(node.events).toContainEqual(expect.objectContaining({ type: 'tunnel-refused', status: 403, peerIdentity: A }));
  });

  it('answers 503 when the workload port is closed', async () => {
    const node = await startNode();
    const client = startClient({ [A]: material(leaves.a!) });
    const port = await closedPort();
    const e = await rejection(client.open({ sourceIdentity: A, node: local(node.port), target: local(port) }));
    expect(e).toMatchObject({ code: 'refused', status: 503 });
    expect(e.reason).toMatch(/ECONNREFUSED/);
    // The session survives a refused tunnel.
    const t = await within(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }), WAIT, 'open');
    expect(await within(echoOnce(t, 'alive'), WAIT, 'echo')).toBe('alive');
    t.end();
    expect(client.stats().sessionsTotal).toBe(1);
  });

  it('answers 405 to anything but CONNECT and 400 to an authority that is not <ip>:<port>', async () => {
    const node = await startNode();
    const session = http2.connect(`https://127.0.0.1:${node.port}`, {
      key: leaves.a!.key, cert: leaves.a!.cert, ca: meshCa.cert, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined,
    });
    cleanups.push(async () => { session.destroy(); });
    session.on('error', () => undefined);
    const ask = (headers: http2.OutgoingHttpHeaders) => within(new Promise<{ status: number; reason: string }>((resolve, reject) => {
      const s = session.request(headers, { endStream: headers[':method'] !== 'CONNECT' });
      s.on('response', (h) => resolve({ status: Number(h[':status']), reason: String(h[REASON_HEADER] ?? '') }));
      s.on('error', reject);
      s.resume();
    }), WAIT, 'response');
    expect(await ask({ ':method': 'GET', ':path': '/' })).toMatchObject({ status: 405, reason: expect.stringMatching(/only CONNECT/) });
    expect(await ask({ ':method': 'CONNECT', ':authority': 'example.com:80' })).toMatchObject({ status: 400, reason: expect.stringMatching(/not <ip>:<port>/) });
    expect(node.requests).toEqual([]);
  });

  it('times out a connect to a node that never answers the TLS handshake, and fails fast on a closed one', async () => {
    const silent = await silentServer();
    cleanups.push(() => silent.close());
    const client = new HboneClient({ credentials: () => material(leaves.a!), connectTimeoutMs: 300 });
    cleanups.push(() => client.close());
    const started = Date.now();
    const e = await rejection(client.open({ sourceIdentity: A, node: local(silent.port), target: local(echo.port) }));
    expect(e.code).toBe('connect-timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(silent.connections).toBe(1);
    const refused = await rejection(client.open({ sourceIdentity: A, node: local(await closedPort()), target: local(echo.port) }));
    expect(refused.code).toBe('connect-failure');
    expect(refused.message).toMatch(/ECONNREFUSED/);
  });

  it('surfaces a failing credentials provider as a credentials error', async () => {
    const node = await startNode();
    const client = startClient({});
    const e = await rejection(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }));
    expect(e.code).toBe('credentials');
    expect(e.message).toContain(A);
  });
});

describe('hbone: errors and shutdown', () => {
  it('a client reset of the tunnel closes the workload connection', async () => {
    const node = await startNode();
    const client = startClient({ [A]: material(leaves.a!) });
    const t = await within(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }), WAIT, 'open');
    expect(await within(echoOnce(t, 'ping'), WAIT, 'echo')).toBe('ping');
    expect(echo.open).toBeGreaterThanOrEqual(1);
    t.close(http2.constants.NGHTTP2_CANCEL);
    await until(() => echo.open === 0, WAIT, 'the workload connection is closed');
    await until(() => node.events.some((e) => e.type === 'tunnel-closed'), WAIT, 'tunnel-closed');
    const closed = node.events.find((e) => e.type === 'tunnel-closed');
    expect(closed?.type === 'tunnel-closed' && closed.error).toMatch(/^peer: /);
  });

  it('a workload reset ends the tunnel with CONNECT_ERROR', async () => {
    const node = await startNode();
    const resetting = await resettingServer();
    cleanups.push(() => resetting.close());
    node.policy.decide = () => ({ allow: true, connect: () => connectTcp(local(resetting.port)) });
    const client = startClient({ [A]: material(leaves.a!) });
    const t = await within(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }), WAIT, 'open');
    const closed = new Promise<number>((resolve) => {
      t.on('error', () => undefined);
      t.once('close', () => resolve(t.rstCode ?? -1));
    });
    t.write('boom');
    expect(await within(closed, WAIT, 'tunnel closed')).toBe(http2.constants.NGHTTP2_CONNECT_ERROR);
    await until(() => node.events.some((e) => e.type === 'tunnel-closed'), WAIT, 'tunnel-closed');
    const ev = node.events.find((e) => e.type === 'tunnel-closed');
    expect(ev?.type === 'tunnel-closed' && ev.error).toMatch(/^upstream: .*ECONNRESET/);
  });

  it('closes gracefully: GOAWAY, open tunnels finish, new connections are refused', async () => {
    const node = await startNode();
    const client = startClient({ [A]: material(leaves.a!) });
    const t = await within(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }), WAIT, 'open');
    const closing = node.server.close(WAIT);
    await until(() => client.stats().sessions === 1 && node.server.address() === undefined, WAIT, 'listener closed');
    // The open tunnel still works through the GOAWAY.
    expect(await within(echoOnce(t, 'after goaway'), WAIT, 'echo')).toBe('after goaway');
    const e = await rejection(client.open({ sourceIdentity: A, node: local(node.port), target: local(echo.port) }));
    expect(e.code).toBe('connect-failure');
    t.end();
    await within(readAll(t), WAIT, 'end');
    await within(closing, WAIT, 'server closed');
    expect(node.server.stats().connections).toBe(0);
  });

  it('closes promptly while a client is still in its handshake', async () => {
    const node = await startNode();
    const raw = await within(new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(node.port, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
    }), WAIT, 'raw connect');
    const ended = new Promise<void>((r) => raw.once('close', () => r()));
    raw.on('error', () => undefined);
    raw.resume();
    await new Promise((r) => setTimeout(r, 50));
    await within(node.server.close(), 2_000, 'close with a handshaking client');
    await within(ended, WAIT, 'raw socket closed');
  });
});
