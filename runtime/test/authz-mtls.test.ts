// The authz filter against identities proven by mTLS: workloads on node 1 reach workloads on
// node 2 through HBONE, each presenting its own certificate; node 2's inbound authz decides
// from the SPIFFE ID it verified, not from anything the client said.
//
//   web / batch / console (node 1) ──HBONE, each as itself──▶ node 2 ──authz──▶ server (HTTP), db (TCP)
//
// - HTTP: a principal × path × method matrix; DENY before ALLOW; default deny with a 403
//   naming the reason.
// - TCP: L4-only rules (principals) decide at the connection phase, before any byte: the
//   allowed client's bytes come back, the other's connection is closed and nothing reaches db;
//   the HBONE CONNECT of the refused principal is answered 401 with the policy's reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { CertificateAuthority, runNode, type RunningNode } from '@ambit/runtime';
import { materialOf, openTunnel } from './support/hbone-peer.js';
import { buildBuiltinFilters, builtinDir } from './fixtures.js';
import { echoWorkload, requestFrom, type EchoWorkload } from './support/mesh.js';
import { until } from './support/telemetry.js';
import { freePort } from './support/upstreams.js';

const TD = 'mesh.test';
const WEB = { address: '127.0.11.1', identity: `spiffe://${TD}/ns/shop/sa/web` };
const BATCH = { address: '127.0.11.2', identity: `spiffe://${TD}/ns/jobs/sa/batch` };
const CONSOLE = { address: '127.0.11.3', identity: `spiffe://${TD}/ns/ops/sa/admin` };
const SERVER = '127.0.12.1';
const DB = '127.0.12.2';

function meshYaml(o: { node: string; target: string; serverPort: number; dbPort: number; deadPort: number; node2Hbone: number }): string {
  const authz = JSON.stringify(builtinDir('authz'));
  return `
node: ${o.node}
trustDomain: ${TD}
identity:
  ca: { dir: ./ca }
proxy:
  outbound: { address: 127.0.0.1, target: "${o.target}" }
  inbound: { address: 127.0.0.1 }
  hbone: { address: 0.0.0.0 }  # node 2's workloads' addresses are local: a peer dials <workload ip>:<hbonePort>
nodes:
  - { name: node-2, address: 127.0.0.1, hbonePort: ${o.node2Hbone} }
workloads:
  - { name: web, namespace: shop, serviceAccount: web, address: ${WEB.address}, node: node-1 }
  - { name: batch, namespace: jobs, serviceAccount: batch, address: ${BATCH.address}, node: node-1 }
  - { name: console, namespace: ops, serviceAccount: admin, address: ${CONSOLE.address}, node: node-1 }
  - { name: server, namespace: test, address: ${SERVER}, node: node-2, labels: { app: server } }
  - { name: db, namespace: test, address: ${DB}, node: node-2, labels: { app: db } }
services:
  - { name: server, namespace: test, selector: { app: server }, ports: [{ port: 80, targetPort: ${o.serverPort}, protocol: http }] }
  - { name: db, namespace: test, selector: { app: db }, ports: [{ port: 5432, targetPort: ${o.dbPort}, protocol: tcp, name: pg }, { port: 5433, targetPort: ${o.deadPort}, protocol: tcp, name: closed }] }
bindings:
  - name: server-authz
    target: { workload: server.test }
    direction: inbound
    filters:
      - ref: ${authz}
        deadlineMs: 5000
        config:
          policies:
            - { name: no-batch-writes, action: DENY, rules: [{ from: [{ source: { namespaces: [jobs] } }], to: [{ operation: { notMethods: [GET] } }] }] }
            - { name: shop-reads, action: ALLOW, rules: [{ from: [{ source: { principals: ["${TD}/ns/shop/sa/web"] } }], to: [{ operation: { methods: [GET], notPaths: ["/admin/*"] } }] }] }
            - { name: jobs-reports, action: ALLOW, rules: [{ from: [{ source: { namespaces: [jobs] } }], to: [{ operation: { paths: ["/reports/*"] } }] }] }
            - { name: ops-all, action: ALLOW, rules: [{ from: [{ source: { principals: ["*/sa/admin"] } }] }] }
  - name: db-authz
    target: { workload: db.test }
    direction: inbound
    filters:
      - ref: ${authz}
        deadlineMs: 5000
        config:
          policies:
            - { name: batch-only, action: ALLOW, rules: [{ from: [{ source: { principals: ["spiffe://${TD}/ns/jobs/sa/batch"] } }] }] }
`;
}

/**
 * Sends `payload` from `from` through the listener and collects what comes back. The client
 * ends its side once the echo is complete; when the proxy ends first, it keeps its side open
 * for a moment (as a slow client would), then ends it.
 */
function tcpExchange(from: string, port: number, payload: string): Promise<{ reply: string; error?: string }> {
  return new Promise((resolve) => {
    let reply = '';
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from, allowHalfOpen: true }, () => s.write(payload));
    s.setTimeout(10_000, () => s.destroy(new Error('timed out')));
    s.on('data', (d: Buffer) => {
      reply += d.toString();
      if (reply.length >= payload.length) s.end();
    });
    s.once('end', () => setTimeout(() => s.end(), 200));
    s.on('error', (e) => resolve({ reply, error: e.message }));
    s.on('close', () => resolve({ reply }));
  });
}

/** The access log's connection records so far. */
async function connectionRecords(file: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r['type'] === 'connection');
}

describe('authz against mTLS identities (two node proxies over HBONE)', () => {
  let dir: string;
  let server: EchoWorkload;
  let db: net.Server;
  const dbReceived: string[] = [];
  let node1: RunningNode;
  let node1Tcp: RunningNode;
  let node2: RunningNode;
  let registry2: Registry;
  let accessLog: string;

  let dbPort = 0;
  /** A port of db's where nothing listens. */
  let deadPort = 0;

  beforeAll(async () => {
    await buildBuiltinFilters();
    dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-authz-mtls-'));
    server = await echoWorkload(SERVER, 'server');
    db = net.createServer((s) => {
      s.on('data', (d: Buffer) => { dbReceived.push(d.toString()); s.write(d); });
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => db.listen(0, DB, r));
    dbPort = (db.address() as net.AddressInfo).port;
    deadPort = await freePort();
    const ports = { outbound: 0, inbound: 0, admin: 0, hbone: 0 };
    // node-2 first: it generates the CA; node 1's proxies load it.
    await writeFile(path.join(dir, 'node-2.yaml'), meshYaml({ node: 'node-2', target: 'server.test:80', serverPort: server.port, dbPort, deadPort, node2Hbone: 15008 }));
    registry2 = new Registry();
    // node-2 warns that node-1 has no HBONE entry (only node 1 sends over HBONE here).
    node2 = await runNode({ config: path.join(dir, 'node-2.yaml'), accessLog: 'off', watch: false, ports, registry: registry2, logLevel: 'error' });
    const hbone2 = node2.proxy.addresses().hbone!.port;
    // Two proxies for node 1, one per outbound target (no capture here): HTTP to server, TCP to db.
    await writeFile(path.join(dir, 'node-1.yaml'), meshYaml({ node: 'node-1', target: 'server.test:80', serverPort: server.port, dbPort, deadPort, node2Hbone: hbone2 }));
    await writeFile(path.join(dir, 'node-1-tcp.yaml'), meshYaml({ node: 'node-1', target: 'db.test:5432', serverPort: server.port, dbPort, deadPort, node2Hbone: hbone2 }));
    node1 = await runNode({ config: path.join(dir, 'node-1.yaml'), accessLog: 'off', watch: false, ports, logLevel: 'warn' });
    accessLog = path.join(dir, 'node-1-tcp-access.log');
    node1Tcp = await runNode({ config: path.join(dir, 'node-1-tcp.yaml'), accessLog: { file: accessLog }, watch: false, ports, logLevel: 'warn' });
  });

  afterAll(async () => {
    await node1?.close();
    await node1Tcp?.close();
    await node2?.close();
    await server?.close();
    await new Promise<void>((r) => (db ? db.close(() => r()) : r()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('decides HTTP requests by the verified principal: a principal × path × method matrix', async () => {
    const out = node1.proxy.addresses().outbound!.port;
    const matrix: Array<[typeof WEB, string, string, number, string?]> = [
      [WEB, 'GET', '/items/1', 200],
      [WEB, 'POST', '/items/1', 403, 'no ALLOW policy matched'],
      [WEB, 'GET', '/admin/stats', 403, 'no ALLOW policy matched'],
      [BATCH, 'GET', '/reports/daily', 200],
      [BATCH, 'GET', '/items/1', 403, 'no ALLOW policy matched'],
      // DENY is evaluated first: jobs-reports would allow it.
      [BATCH, 'POST', '/reports/daily', 403, 'policy no-batch-writes'],
      [CONSOLE, 'DELETE', '/admin/stats', 200],
      [CONSOLE, 'GET', '/items/1', 200],
    ];
    for (const [who, method, p, status, body] of matrix) {
      const r = await requestFrom(who.address, out, p, { method });
      expect({ who: who.identity, method, p, status: r.status, body: r.body }).toMatchObject({ who: who.identity, method, p, status });
      if (body) expect(r.body).toContain(body);
      // What reached the server came with the identity node 2 verified.
      if (status === 200) expect((JSON.parse(r.body) as { workload: string }).workload).toBe('server');
    }
    // A request body crosses too (head and body written together on node 1's side of the tunnel).
    const posted = await requestFrom(CONSOLE.address, out, '/items', { method: 'POST', body: 'x'.repeat(300), headers: { 'content-type': 'text/plain' } });
    expect(posted.status).toBe(200);
    expect((JSON.parse(posted.body) as { body: string }).body).toBe('x'.repeat(300));
    // Every request went through a tunnel, as its workload.
    expect(node1.proxy.tunnels!.stats().client.tunnelsTotal).toBeGreaterThanOrEqual(3);
    // node 2's filter counters (handed over from its data path in batches).
    let counters = '';
    const counted = async () => {
      counters = await registry2.getSingleMetricAsString('ambit_filter_counter_total');
      return /filter="authz",name="allowed_ops-all"\} [1-9]/.test(counters) && /filter="authz",name="denied_no-batch-writes"\} [1-9]/.test(counters);
    };
    await until(counted, 'the authz counters of node 2', 15_000).catch(() => undefined);
    expect(counters).toMatch(/filter="authz",name="denied_no-batch-writes"\} 1\n/);
    expect(counters).toMatch(/filter="authz",name="allowed_ops-all"\} 3\n/);
  });

  it('holds L4 rules on TCP at the connection phase: the allowed principal\'s bytes come back, another\'s connection is closed', async () => {
    const out = node1Tcp.proxy.addresses().outbound!.port;
    const allowed = await tcpExchange(BATCH.address, out, 'batch-payload');
    // The allowed client ends its side after the reply; the db side echoes, then closes on end.
    expect(allowed.reply).toBe('batch-payload');
    const denied = await tcpExchange(WEB.address, out, 'web-payload');
    expect(denied.reply).toBe('');
    expect(dbReceived.join('')).toContain('batch-payload');
    expect(dbReceived.join('')).not.toContain('web-payload');
    // node 1 let go of both client connections: each is in its access log, written when a
    // connection closes (a client that lingers after the upstream closed is not kept open).
    let records: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 100 && records.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      records = await connectionRecords(accessLog);
    }
    expect(records.map((r) => r['source_principal']).sort()).toEqual([BATCH.identity, WEB.identity].sort());
    await until(async () => /filter="authz",name="denied_default"\} [1-9]/.test(await registry2.getSingleMetricAsString('ambit_filter_counter_total')), 'the default denial counted');
  });

  it('answers the HBONE CONNECT of a principal the connection phase refuses with 401 and the reason, and opens the allowed one', async () => {
    const ca = await CertificateAuthority.loadOrCreate(path.join(dir, 'ca'), { trustDomain: TD });
    const dial = { address: DB, port: node2.proxy.addresses().hbone!.port };
    const as = async (who: typeof WEB, port = dbPort) => {
      const a = await openTunnel({ material: materialOf(await ca.issueWorkloadCertificate({ identity: who.identity }), ca.certPem), dial, authority: `${DB}:${port}`, headers: { forwarded: `for=${who.address}` } });
      a.close();
      return a;
    };
    const web = await as(WEB);
    expect(web.status).toBe(401);
    expect(web.headers['ambit-reason']).toMatch(/authz/);
    expect((await as(BATCH)).status).toBe(200);
  });

  it('answers an allowed HBONE CONNECT to a port where the workload does not listen with 503 and the reason', async () => {
    const ca = await CertificateAuthority.loadOrCreate(path.join(dir, 'ca'), { trustDomain: TD });
    const a = await openTunnel({
      material: materialOf(await ca.issueWorkloadCertificate({ identity: BATCH.identity }), ca.certPem),
      dial: { address: DB, port: node2.proxy.addresses().hbone!.port }, authority: `${DB}:${deadPort}`, headers: { forwarded: `for=${BATCH.address}` },
    });
    a.close();
    expect(a.status).toBe(503);
    expect(String(a.headers['ambit-reason'])).toMatch(/refused/i);
  });
});
