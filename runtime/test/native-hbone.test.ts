// HBONE on the native data path: two node proxies on loopback, each workload's traffic in
// mutual TLS 1.3 (rustls) and HTTP/2 CONNECT (h2), as Istio's ztunnel speaks it:
//
//   client 127.0.1.1 ──▶ node-1 outbound ──HBONE to 127.0.2.1:<hbone>, as client-sa──▶ node-2 ──▶ server 127.0.2.1
//
// node-2's HBONE listener is bound to its workload's address, so the address dialed is the
// workload's (on a real node, capture redirects it). node-2 binds the mtls filter (STRICT)
// and the `peer` fixture inbound, so the server's request headers show what node-2's
// filters were told. Then what the server side refuses, and what the client side refuses.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { buildFilter } from '@ambit/filter-sdk/build';
import { CertificateAuthority, runNode, type RunningNode } from '@ambit/runtime';
import { REPO } from './fixtures.js';
import { materialOf as material, openTunnel, rogueHboneServer, type RogueServer, type TlsMaterial } from './support/hbone-peer.js';
import { captureLogs, echoWorkload, echoWorkloadH2, requestFrom, type EchoWorkload } from './support/mesh.js';
import { until } from './support/telemetry.js';

const PEER_DIR = path.join(REPO, 'runtime/test/fixtures/peer');
const MTLS_DIR = path.join(REPO, 'filters/mtls');
const TD = 'native-hbone.test';
const CLIENT = { address: '127.0.1.1', identity: `spiffe://${TD}/ns/test/sa/client-sa` };
const SERVER = { address: '127.0.2.1', identity: `spiffe://${TD}/ns/test/sa/server-sa` };
/** The header an HBONE refusal names its reason in. */
const REASON = 'ambit-reason';
const ELSEWHERE = { address: '127.0.4.1', identity: `spiffe://${TD}/ns/test/sa/elsewhere-sa` };

function meshYaml(o: { node: string; hbone: string; serverPort: number; h2Port: number; hbonePorts: { node2: number; node3: number } }): string {
  return `
node: ${o.node}
trustDomain: ${TD}
identity:
  ca: { dir: ./ca }
proxy:
  outbound: { address: 127.0.0.1, target: "server.test:80" }
  inbound: { address: 127.0.0.1 }
  hbone: { address: ${o.hbone} }
  engine: wasmtime
  dataPath: native
  native: { threads: 1 }
nodes:
  - { name: node-2, address: 127.0.0.1, hbonePort: ${o.hbonePorts.node2} }
  - { name: node-3, address: 127.0.0.1, hbonePort: ${o.hbonePorts.node3} }
workloads:
  - { name: client, namespace: test, serviceAccount: client-sa, address: ${CLIENT.address}, node: node-1 }
  - { name: server, namespace: test, serviceAccount: server-sa, address: ${SERVER.address}, node: node-2, labels: { app: server } }
  - { name: elsewhere, namespace: test, serviceAccount: elsewhere-sa, address: ${ELSEWHERE.address}, node: node-3, labels: { app: elsewhere } }
services:
  - name: server
    namespace: test
    selector: { app: server }
    ports:
      - { port: 80, targetPort: ${o.serverPort}, protocol: http, name: http }
      - { port: 81, targetPort: ${o.serverPort}, protocol: tcp, name: raw }
  - name: server-h2
    namespace: test
    selector: { app: server }
    ports: [{ port: 80, targetPort: ${o.h2Port}, protocol: http2 }]
  - { name: elsewhere, namespace: test, selector: { app: elsewhere }, ports: [{ port: 80, targetPort: ${o.serverPort}, protocol: http }] }
bindings:
  - name: server-inbound
    target: { workload: server.test }
    direction: inbound
    filters:
      - ref: ${JSON.stringify(MTLS_DIR)}
        deadlineMs: 5000
        config: { mode: STRICT, allowedTrustDomains: [${TD}] }
      - ref: ${JSON.stringify(PEER_DIR)}
        deadlineMs: 5000
`;
}

interface Echo { workload: string; httpVersion: string; headers: Record<string, string> }

describe('HBONE on the native data path (rustls, h2)', () => {
  let dir: string;
  let server: EchoWorkload;
  let serverH2: EchoWorkload;
  let node1: RunningNode;
  let node2: RunningNode;
  let registry2: Registry;
  let logs2: Array<{ level: string; msg: string }>;
  let outbound1: number;
  let hbone2: { address: string; port: number };
  let ca: CertificateAuthority;
  let rogue: RogueServer;

  beforeAll(async () => {
    for (const d of [PEER_DIR, MTLS_DIR]) {
      if (!existsSync(path.join(d, 'dist/manifest.json')) || process.env.AMBIT_TEST_REBUILD) await buildFilter({ dir: d });
    }
    dir = await mkdtemp(path.join(os.tmpdir(), 'amb-native-hbone-'));
    server = await echoWorkload(SERVER.address, 'server');
    serverH2 = await echoWorkloadH2(SERVER.address, 'server-h2');
    ca = await CertificateAuthority.loadOrCreate(path.join(dir, 'ca'), { trustDomain: TD });
    // node-3 is an impostor on the elsewhere workload's address: a certificate of the mesh
    // CA, but not the elsewhere workload's identity.
    const impostor = await ca.issueWorkloadCertificate({ identity: `spiffe://${TD}/ns/test/sa/impostor` });
    rogue = await rogueHboneServer(material(impostor, ca.certPem), ELSEWHERE.address);
    const rogueAddress = rogue.address;
    const ports = { outbound: 0, inbound: 0, admin: 0, hbone: 0 };
    await writeFile(path.join(dir, 'node-2.yaml'), meshYaml({ node: 'node-2', hbone: SERVER.address, serverPort: server.port, h2Port: serverH2.port, hbonePorts: { node2: 15008, node3: rogueAddress.port } }));
    registry2 = new Registry();
    node2 = await runNode({ config: path.join(dir, 'node-2.yaml'), accessLog: 'off', watch: false, ports, registry: registry2, logLevel: 'warn' });
    logs2 = captureLogs(node2.telemetry);
    hbone2 = node2.proxy.addresses().hbone!;
    expect(hbone2.address).toBe(SERVER.address);
    await writeFile(path.join(dir, 'node-1.yaml'), meshYaml({ node: 'node-1', hbone: CLIENT.address, serverPort: server.port, h2Port: serverH2.port, hbonePorts: { node2: hbone2.port, node3: rogueAddress.port } }));
    node1 = await runNode({ config: path.join(dir, 'node-1.yaml'), accessLog: 'off', watch: false, ports, logLevel: 'warn' });
    outbound1 = node1.proxy.addresses().outbound!.port;
  });

  afterAll(async () => {
    await node1?.close();
    await node2?.close();
    await rogue?.close();
    await server?.close();
    await serverH2?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves both nodes on the native data path', () => {
    expect('info' in node1.proxy && 'info' in node2.proxy).toBe(true);
  });

  it('a request from a workload on node 1 reaches the workload on node 2 with the source identity, over TLS 1.3 with AES-GCM', async () => {
    const r = await requestFrom(CLIENT.address, outbound1, '/hello');
    expect(r.status, r.body).toBe(200);
    const echo = JSON.parse(r.body) as Echo;
    expect(echo.workload).toBe('server');
    expect(echo.headers['x-peer-identity']).toBe(CLIENT.identity);
    expect(echo.headers['x-peer-workload']).toBe('test/client');
    expect(echo.headers['x-peer-direction']).toBe('inbound');
    // The connection phase on node 2 was given the TLS facts of the HBONE session (no SNI: ztunnel sends none).
    await until(async () => /tls TLSv1\.3 TLS_AES_(128|256)_GCM_SHA(256|384) sni=-"\} [1-9]/.test(await registry2.getSingleMetricAsString('ambit_filter_counter_total')), 'the TLS facts counted');
    const counters = await registry2.getSingleMetricAsString('ambit_filter_counter_total');
    expect(counters, counters).toContain(`name="identity ${CLIENT.identity}"`);
    expect(counters).toMatch(/filter="mtls",name="allowed_mtls"\} [1-9]/);
    // The HBONE counters, in node-2's Prometheus metrics and node-1's statistics.
    expect(await registry2.getSingleMetricAsString('ambit_hbone_tunnels_opened_total')).toMatch(/ambit_hbone_tunnels_opened_total\{side="inbound"\} [1-9]/);
    expect(await registry2.getSingleMetricAsString('ambit_hbone_connections')).toMatch(/ambit_hbone_connections\{side="inbound"\} [1-9]/);
    expect(node1.proxy.tunnels!.stats().client.tunnelsTotal).toBeGreaterThan(0);
    expect(node2.proxy.tunnels!.stats().server.bytesFromPeers).toBeGreaterThan(0);
  });

  it('HTTP/2 to an http2 service on node 2 goes through the tunnel as HTTP/2', async () => {
    const r = await requestFrom(CLIENT.address, outbound1, '/h2', { headers: { host: 'server-h2.test' } });
    expect(r.status, r.body).toBe(200);
    const echo = JSON.parse(r.body) as Echo;
    expect(echo.workload).toBe('server-h2');
    expect(echo.httpVersion).toBe('2.0');
    expect(echo.headers['x-peer-identity']).toBe(CLIENT.identity);
  });

  it('many requests share one HBONE session per (source identity, destination)', async () => {
    const before = node1.proxy.tunnels!.stats().client.sessionsTotal;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => requestFrom(CLIENT.address, outbound1, `/many/${i}`, { agent })));
    agent.destroy();
    expect(replies.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.body}`)).toEqual([]);
    expect(node1.proxy.tunnels!.stats().client.sessionsTotal).toBe(before);
    expect(node1.proxy.tunnels!.stats().client.sessions).toBe(1);
  });

  it('a server that presents another identity than the destination workload\'s is refused by the client: 503 saying why', async () => {
    const r = await requestFrom(CLIENT.address, outbound1, '/to-impostor', { headers: { host: 'elsewhere.test' } });
    expect(r.status).toBe(503);
    expect(r.headers['x-ambit-upstream-error']).toBe('connect-failure');
    expect(r.body).toContain(`presented spiffe://${TD}/ns/test/sa/impostor, which is not the destination workload's identity ${ELSEWHERE.identity}`);
    expect(rogue.tunnels).toBe(0);
  });

  it('a client that is not a workload of node 1 is not tunnelled: 503 with the reason', async () => {
    const r = await requestFrom('127.0.0.1', outbound1, '/anonymous');
    expect(r.status).toBe(503);
    expect(r.body).toContain('AMBIT_ERR_NO_SOURCE_IDENTITY');
  });

  describe('what the HBONE server refuses', () => {
    /** 'opened', or the status and reason of the refusal, or the TLS error. */
    async function open(m: TlsMaterial, target: { address: string; port: number }, headers: Record<string, string> = {}, method?: string): Promise<string> {
      try {
        const a = await openTunnel({ material: m, dial: hbone2, authority: `${target.address}:${target.port}`, headers, ...(method ? { method } : {}) });
        a.close();
        return a.status === 200 ? 'opened' : `${a.status} ${String(a.headers[REASON] ?? '')}`;
      } catch (e) {
        return (e as Error).message;
      }
    }
    const refusals = async () => (await registry2.getSingleMetricAsString('ambit_connections_total')).split('\n').filter((l) => l.includes('denied="hbone"'));
    const refusedSince = (n: number) => logs2.slice(n).filter((l) => l.msg.startsWith('hbone: refused')).map((l) => l.msg);

    it('a tunnel whose authority is not the dialed address: 400', async () => {
      const cert = await ca.issueWorkloadCertificate({ identity: CLIENT.identity });
      const msg = await open(material(cert, ca.certPem), { address: '127.0.0.9', port: server.port });
      expect(msg).toContain('400');
      expect(msg).toContain('is not the address dialed');
    });

    it('a certificate from an unknown CA is refused in the handshake, and the log says so', async () => {
      const n = logs2.length;
      const other = CertificateAuthority.generateRoot({ trustDomain: TD, commonName: 'impostor CA' });
      const cert = await other.issueWorkloadCertificate({ identity: CLIENT.identity });
      expect(await open(material(cert, ca.certPem), { address: SERVER.address, port: server.port })).not.toBe('opened');
      await until(async () => (await refusals()).length > 0, 'the refusal counted');
      // Other refusals may be logged after `n` too: wait for this one's reason.
      await until(() => refusedSince(n).some((m) => /UnknownIssuer/.test(m)), 'the unknown-CA refusal in the log');
      expect(await registry2.getSingleMetricAsString('ambit_hbone_refused_total')).toMatch(/what="connection"\} [1-9]/);
    });

    it('an expired certificate is refused, and the log says so', async () => {
      const n = logs2.length;
      const cert = await ca.issueWorkloadCertificate({ identity: CLIENT.identity, notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
      expect(await open(material(cert, ca.certPem), { address: SERVER.address, port: server.port })).not.toBe('opened');
      await until(() => refusedSince(n).some((m) => /expired/i.test(m)), 'the expired-certificate refusal in the log');
    });

    it('a client offering only TLS 1.2, or only ChaCha20, finds nothing in common', async () => {
      const cert = await ca.issueWorkloadCertificate({ identity: CLIENT.identity });
      const attempt = (options: tls.ConnectionOptions) => new Promise<Error | undefined>((resolve) => {
        const s = tls.connect({
          host: hbone2.address, port: hbone2.port, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined,
          key: cert.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: cert.certChainPem, ca: ca.certPem, ...options,
        });
        s.once('secureConnect', () => { s.destroy(); resolve(undefined); });
        s.once('error', (e) => resolve(e));
      });
      expect((await attempt({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }))?.message).toMatch(/protocol version|alert/i);
      expect((await attempt({ minVersion: 'TLSv1.3', ciphers: 'TLS_CHACHA20_POLY1305_SHA256' }))?.message).toMatch(/handshake failure|alert/i);
      // The same client with an AES-GCM suite gets through: the refusals are not blanket.
      expect(await attempt({ minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' })).toBeUndefined();
    });

    it('a `forwarded` address that is not the presenting workload\'s is not believed: the source is unknown', async () => {
      const intruder = await ca.issueWorkloadCertificate({ identity: `spiffe://${TD}/ns/test/sa/intruder` });
      const a = await openTunnel({ material: material(intruder, ca.certPem), dial: hbone2, authority: `${SERVER.address}:${server.port}`, headers: { forwarded: `for=${CLIENT.address}` } });
      try {
        expect(a.status).toBe(200);
        const t = a.stream!;
        const got = await new Promise<string>((resolve, reject) => {
          let text = '';
          t.setEncoding('latin1');
          t.on('data', (d: string) => { text += d; if (text.includes('}')) resolve(text); });
          t.once('error', reject);
          t.write('GET /spoofed HTTP/1.1\r\nhost: server.test\r\nconnection: close\r\n\r\n');
        });
        expect(got).toMatch(/^HTTP\/1\.1 200/);
        // The intruder's identity is proven; the client workload's address it claimed is not taken.
        expect(got).toContain(`"x-peer-identity":"spiffe://${TD}/ns/test/sa/intruder"`);
        expect(got).toContain('"x-peer-workload":"none"');
      } finally {
        a.close();
      }
    });

    it('a tunnel that is not a CONNECT: 405', async () => {
      const cert = await ca.issueWorkloadCertificate({ identity: CLIENT.identity });
      const msg = await open(material(cert, ca.certPem), { address: SERVER.address, port: server.port }, {}, 'GET');
      expect(msg).toMatch(/^405 GET is not CONNECT/);
    });

    it('an accepted tunnel is answered 200 with baggage naming the destination workload, and the server presents that workload\'s identity', async () => {
      const cert = await ca.issueWorkloadCertificate({ identity: CLIENT.identity });
      const a = await openTunnel({ material: material(cert, ca.certPem), dial: hbone2, authority: `${SERVER.address}:${server.port}`, headers: { forwarded: `for=${CLIENT.address}` } });
      a.close();
      expect(a.status).toBe(200);
      expect(a.headers.baggage).toBe('k8s.namespace.name=test,k8s.workload.name=server');
      expect(a.serverIdentity).toBe(SERVER.identity);
    });
  });

  it('holds certificates only for the workloads on its node, no node identity, 24 h by default', () => {
    expect(node1.identity!.store.identities()).toEqual([CLIENT.identity]);
    expect(node2.identity!.store.identities()).toEqual([SERVER.identity]);
    const cert = node1.identity!.store.certificate(CLIENT.identity)!;
    // notAfter is in whole seconds.
    expect(Math.abs(cert.notAfter.getTime() - cert.issuedAt.getTime() - 24 * 3600_000)).toBeLessThan(2_000);
  });

  it('an HTTP upgrade goes through the tunnel, then bytes flow both ways', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: outbound1, localAddress: CLIENT.address });
    socket.setEncoding('latin1');
    let got = '';
    socket.on('data', (d: string) => { got += d; });
    await new Promise<void>((resolve, reject) => { socket.once('connect', () => resolve()); socket.once('error', reject); });
    socket.write('GET /chat HTTP/1.1\r\nhost: server.test\r\nconnection: upgrade\r\nupgrade: echo-protocol\r\n\r\n');
    await until(() => got.includes('\r\n\r\n'), 'the 101');
    expect(got).toMatch(/^HTTP\/1\.1 101/);
    // node-2's inbound filters saw the client's identity on the upgrade request too.
    expect(got).toContain(`x-peer-identity: ${CLIENT.identity}`);
    got = '';
    socket.write('ping over the tunnel');
    await until(() => got === 'ping over the tunnel', 'the echo');
    socket.destroy();
  });

  it('a reload that adds a local workload issues its certificate, and traffic from it goes out as itself; one that removes it drops it', async () => {
    const file = path.join(dir, 'node-1.yaml');
    const original = await readFile(file, 'utf8');
    const batch = { address: '127.0.1.2', identity: `spiffe://${TD}/ns/test/sa/batch-sa` };
    await writeFile(file, original.replace('workloads:\n', `workloads:\n  - { name: batch, namespace: test, serviceAccount: batch-sa, address: ${batch.address}, node: node-1 }\n`));
    try {
      expect(await node1.reload()).toBe(true);
      expect(node1.identity!.store.identities()).toContain(batch.identity);
      const r = await requestFrom(batch.address, outbound1, '/from-batch');
      expect(r.status, r.body).toBe(200);
      expect((JSON.parse(r.body) as Echo).headers['x-peer-identity']).toBe(batch.identity);
    } finally {
      await writeFile(file, original);
      expect(await node1.reload()).toBe(true);
    }
    expect(node1.identity!.store.identities()).toEqual([CLIENT.identity]);
  });

  it('rotation on both ends under load loses no request', async () => {
    const store1 = node1.identity!.store;
    const store2 = node2.identity!.store;
    const before = { client: store1.certificate(CLIENT.identity)!.fingerprint256, server: store2.certificate(SERVER.identity)!.fingerprint256 };
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const failures: string[] = [];
    let done = 0;
    for (let round = 1; round <= 4; round++) {
      let next = 0;
      const worker = async () => {
        while (next < 40) {
          const i = next++;
          if (i === 5) await Promise.all([store1.rotate(CLIENT.identity), store2.rotate(SERVER.identity)]);
          const r = await requestFrom(CLIENT.address, outbound1, `/load/${round}/${i}`, { agent, method: 'POST', body: `payload ${round}/${i}` })
            .catch((e: Error) => ({ status: 0, body: e.message, headers: {} }));
          done++;
          if (r.status !== 200) failures.push(`${r.status} ${r.body}`);
        }
      };
      await Promise.all(Array.from({ length: 4 + 4 * round }, worker));
    }
    agent.destroy();
    expect(failures).toEqual([]);
    expect(done).toBe(160);
    expect(store1.certificate(CLIENT.identity)!.fingerprint256).not.toBe(before.client);
    expect(store2.certificate(SERVER.identity)!.fingerprint256).not.toBe(before.server);
  });

  it('/config_dump holds no key material', async () => {
    const admin = node2.admin!.address();
    const dump = await new Promise<string>((resolve, reject) => {
      http.get({ host: admin.address, port: admin.port, path: '/config_dump' }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => { b += d.toString(); });
        res.on('end', () => resolve(b));
      }).on('error', reject);
    });
    expect(dump).not.toMatch(/PRIVATE KEY|BEGIN/);
    // The certificates it holds: SPIFFE ID, fingerprint, expiry; and the HBONE counters.
    const parsed = JSON.parse(dump) as { identity: { store: { certificates: Array<{ identity: string; current: { fingerprint256: string; notAfter: string } }> }; hbone: { server: { connectionsTotal: number } } } };
    const held = parsed.identity.store.certificates.find((c) => c.identity === SERVER.identity)!;
    expect(held.current.fingerprint256).toBe(node2.identity!.store.certificate(SERVER.identity)!.fingerprint256);
    expect(Date.parse(held.current.notAfter)).toBeGreaterThan(Date.now());
    expect(parsed.identity.hbone.server.connectionsTotal).toBeGreaterThan(0);
  });
});
