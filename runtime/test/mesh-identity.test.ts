// The node's CA from files: an intermediate CA (cert, key, chain, root) signs the node's
// workload certificates and HBONE peers verify them up to the root; a CA that does not load
// stops the node at start with a coded reason. The node's HBONE listener is bound to its
// workload's address, as a peer dials it (on a real node, capture brings it there).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { CertificateAuthority, runNode, type RunningNode } from '@ambit/runtime';
import { materialOf, openTunnel } from './support/hbone-peer.js';
import { echoWorkload, type EchoWorkload } from './support/mesh.js';

const TD = 'mesh.test';
const SERVER = { address: '127.0.3.1', identity: `spiffe://${TD}/ns/test/sa/server-sa` };

function yaml(ca: string, serverPort: number, certTtlMs = 86_400_000): string {
  return `
node: node-i
trustDomain: ${TD}
identity:
  ca: ${ca}
  certTtlMs: ${certTtlMs}
proxy:
  outbound: { address: 127.0.0.1 }
  inbound: { address: 127.0.0.1 }
  hbone: { address: ${SERVER.address} }
  native: { threads: 1 }
workloads:
  - { name: server, namespace: test, serviceAccount: server-sa, address: ${SERVER.address}, ports: [${serverPort}] }
`;
}

describe('the mesh CA from files, with an intermediate', () => {
  let dir: string;
  let root: CertificateAuthority;
  let intermediate: CertificateAuthority;
  let server: EchoWorkload;
  let node: RunningNode;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'amb5-ca-'));
    root = CertificateAuthority.generateRoot({ trustDomain: TD, commonName: 'test root' });
    intermediate = root.createIntermediate({ commonName: 'test intermediate' });
    const pem = intermediate.exportPem();
    await writeFile(path.join(dir, 'int-cert.pem'), pem.certPem);
    await writeFile(path.join(dir, 'int-key.pem'), pem.keyPem, { mode: 0o600 });
    await writeFile(path.join(dir, 'root-cert.pem'), root.certPem);
    await writeFile(path.join(dir, 'other-key.pem'), CertificateAuthority.generateRoot({ trustDomain: TD }).exportPem().keyPem, { mode: 0o600 });
    server = await echoWorkload(SERVER.address, 'server');
    // Certificates of 3 s rotate on their own about every 1.5 s.
    await writeFile(path.join(dir, 'mesh.yaml'), yaml('{ certFile: int-cert.pem, keyFile: int-key.pem, rootFile: root-cert.pem }', server.port, 3_000));
    node = await runNode({ config: path.join(dir, 'mesh.yaml'), accessLog: 'off', watch: false, ports: { outbound: 0, inbound: 0, admin: 0, hbone: 0 }, logLevel: 'warn' });
  });

  afterAll(async () => {
    await node?.close();
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('issues the node\'s certificates from the intermediate, sent with it, trusted up to the root', () => {
    const cert = node.identity!.store.certificate(SERVER.identity)!;
    expect(cert.intermediates.map((c) => c.fingerprint256)).toEqual([intermediate.certificate.fingerprint256]);
    expect(cert.certificate.verify(intermediate.certificate.publicKey)).toBe(true);
    const dump = node.identity!.describe();
    expect(dump.ca.intermediates.map((c) => c.fingerprint256)).toEqual([intermediate.certificate.fingerprint256]);
    expect(dump.ca.roots.map((c) => c.fingerprint256)).toEqual([root.certificate.fingerprint256]);
    expect(dump.ca.source).toContain('int-cert.pem');
  });

  it('a peer with a certificate from the same intermediate opens a tunnel to the local workload', async () => {
    const peer = await intermediate.issueWorkloadCertificate({ identity: `spiffe://${TD}/ns/test/sa/client-sa` });
    const a = await openTunnel({ material: materialOf(peer, root.certPem), dial: node.proxy.addresses().hbone!, authority: `${SERVER.address}:${server.port}` });
    try {
      expect(a.status).toBe(200);
      // The node presented the server workload's certificate, trusted up to the root.
      expect(a.serverIdentity).toBe(SERVER.identity);
      // HTTP/1.1 through the tunnel, as another node would send it.
      const reply = await new Promise<string>((resolve, reject) => {
        let text = '';
        a.stream!.setEncoding('utf8');
        a.stream!.on('data', (d: string) => { text += d; if (text.includes('"workload":"server"')) resolve(text); });
        a.stream!.on('error', reject);
        a.stream!.write(`GET /via-intermediate HTTP/1.1\r\nhost: server\r\nconnection: close\r\n\r\n`);
      });
      expect(reply).toMatch(/^HTTP\/1\.1 200/);
    } finally {
      a.close();
    }
  });

  it('rotates certificates on its own before they expire; new handshakes get the new one', async () => {
    const store = node.identity!.store;
    const nodeId = SERVER.identity;
    const first = store.certificate(nodeId)!;
    // Every certificate the node identity has had since (it rotates on while we look).
    const seen = new Set<string>();
    const record = (e: { identity: string; current: { fingerprint256: string } }) => { if (e.identity === nodeId) seen.add(e.current.fingerprint256); };
    store.on('rotated', record);
    const rotated = await new Promise<{ identity: string; current: { fingerprint256: string; notAfter: Date } }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no rotation within 10 s')), 10_000);
      const on = (e: { identity: string; current: { fingerprint256: string; notAfter: Date } }) => {
        if (e.identity !== nodeId) return;
        clearTimeout(timer);
        store.off('rotated', on);
        resolve(e);
      };
      store.on('rotated', on);
    });
    // Before the old one expired.
    expect(Date.now()).toBeLessThan(first.notAfter.getTime());
    expect(rotated.current.fingerprint256).not.toBe(first.fingerprint256);
    const peer = await intermediate.issueWorkloadCertificate({ identity: `spiffe://${TD}/ns/test/sa/client-sa` });
    const presented = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({
        ...node.proxy.addresses().hbone!, host: node.proxy.addresses().hbone!.address, ALPNProtocols: ['h2'], ca: root.certPem, checkServerIdentity: () => undefined,
        key: peer.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: peer.certChainPem,
      });
      s.once('secureConnect', () => { resolve(s.getPeerX509Certificate()!.fingerprint256); s.destroy(); });
      s.once('error', reject);
    });
    store.off('rotated', record);
    expect(seen.has(presented)).toBe(true);
    expect(presented).not.toBe(first.fingerprint256);
  });

  it('a CA key that does not match its certificate stops the node at start, saying so', async () => {
    await writeFile(path.join(dir, 'bad.yaml'), yaml('{ certFile: int-cert.pem, keyFile: other-key.pem, rootFile: root-cert.pem }', server.port));
    const err = await runNode({ config: path.join(dir, 'bad.yaml'), accessLog: 'off', watch: false, ports: { outbound: 0, inbound: 0, admin: 0, hbone: 0 }, logLevel: 'error' })
      .then(async (n) => { await n.close(); return undefined; }, (e: Error & { code?: string }) => e);
    expect(err?.code).toBe('AMBIT_ERR_IDENTITY');
    expect(err?.message).toMatch(/the CA key does not match the CA certificate/);
  });

  it('an intermediate without its root stops the node at start, saying what to add', async () => {
    await writeFile(path.join(dir, 'noroot.yaml'), yaml('{ certFile: int-cert.pem, keyFile: int-key.pem }', server.port));
    const err = await runNode({ config: path.join(dir, 'noroot.yaml'), accessLog: 'off', watch: false, ports: { outbound: 0, inbound: 0, admin: 0, hbone: 0 }, logLevel: 'error' })
      .then(async (n) => { await n.close(); return undefined; }, (e: Error & { code?: string }) => e);
    expect(err?.code).toBe('AMBIT_ERR_IDENTITY');
    expect(err?.message).toMatch(/is an intermediate CA: give its root/);
  });
});
