// The node proxy's side of the controller: certificate requests (PKCS#10) signed by a CA that
// stays elsewhere, the resources of the config stream assembled into a mesh config (JSON
// pointers mapped back to resources for NACKs), and identity.ca.controller.
import { describe, expect, it } from 'vitest';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { CertificateAuthority, controlplane, createCsr, MeshConfigError, readCsr, validateMeshConfig } from '@ambit/runtime';

describe('certificate requests', () => {
  const ca = CertificateAuthority.generateRoot({ trustDomain: 'cluster.local' });

  it('a request carries the SPIFFE ID and the key; the CA signs that key and nothing else', () => {
    const keys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const csr = createCsr('spiffe://cluster.local/ns/shop/sa/web', keys);
    expect(csr).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----/);
    const read = readCsr(csr);
    expect(read.uris).toEqual(['spiffe://cluster.local/ns/shop/sa/web']);
    const cert = ca.signWorkloadKey({ identity: read.uris[0]!, ttlMs: 60_000 }, read.publicKey);
    expect(cert.certificate.checkPrivateKey(keys.privateKey)).toBe(true);
    expect(cert.certificate.subjectAltName).toBe('URI:spiffe://cluster.local/ns/shop/sa/web');
    expect(cert.certificate.verify(ca.certificate.publicKey)).toBe(true);
  });

  it('a request whose signature does not verify is refused', () => {
    const keys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    // Signed by a key other than the one it carries.
    const forged = createCsr('spiffe://cluster.local/ns/shop/sa/web', { privateKey: other.privateKey, publicKey: keys.publicKey });
    expect(() => readCsr(forged)).toThrow(/signature does not verify with its own key/);
    expect(() => readCsr('nonsense')).toThrow(/not a PEM CERTIFICATE REQUEST/);
  });

  it('a server certificate names its DNS names and IP addresses', () => {
    const s = ca.issueServerCertificate({ dnsNames: ['ambit-controller.ambit-system.svc'], ipAddresses: ['127.0.0.1', '::1'] });
    const cert = new X509Certificate(s.certChainPem);
    expect(cert.subjectAltName).toBe('DNS:ambit-controller.ambit-system.svc, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(cert.checkHost('ambit-controller.ambit-system.svc')).toBe('ambit-controller.ambit-system.svc');
  });
});

describe('the config stream\'s resources', () => {
  const res = (type: string, name: string, body: object) => ({ type, name, version: '1', body: Buffer.from(JSON.stringify(body)) });

  it('assemble a mesh config after the base file\'s lists, and map pointers back to resources', () => {
    const set = new controlplane.ResourceSet();
    set.apply([
      res('mesh', 'mesh', { trustDomain: 'td.test', identity: { ca: { controller: true } }, roots: 'PEM' }),
      res('workload', 'web.shop', { name: 'web', namespace: 'shop', address: '10.0.0.1', node: 'n1' }),
      res('binding', 'fb/shop/b', { name: 'fb/shop/b', target: { all: true }, direction: 'outbound', filters: [{ ref: 'x' }] }),
      res('binding', 'authz/shop/web', { name: 'authz/shop/web', target: { all: true }, direction: 'inbound', filters: [{ ref: 'y' }] }),
    ], []);
    const { value, locate } = set.assemble('n1', { proxy: { admin: { port: 15100 } }, workloads: [{ name: 'local', address: '10.0.0.9' }] });
    expect(value).toMatchObject({ node: 'n1', trustDomain: 'td.test', identity: { ca: { controller: true } }, proxy: { admin: { port: 15100 } } });
    expect((value.workloads as { name: string }[]).map((w) => w.name)).toEqual(['local', 'web']);
    expect((value.bindings as { name: string }[]).map((b) => b.name)).toEqual(['authz/shop/web', 'fb/shop/b']);
    expect(locate('/bindings/1/filters/0/config/x')).toEqual({ resource: 'binding/fb/shop/b', pointer: '/filters/0/config/x', message: '' });
    expect(locate('/workloads/0/address')).toBeUndefined();
    set.apply([], [{ type: 'binding', name: 'fb/shop/b' }]);
    expect(set.versions()).not.toHaveProperty('binding/fb/shop/b');
    expect(set.version('workload/web.shop')).toBe('1');
  });

  it('identity.ca.controller: the controller signs, so the config must not name a CA of its own', () => {
    const ok = validateMeshConfig({ node: 'n1', identity: { ca: { controller: true } } }, 'stream');
    expect(ok.config.identity!.ca.controller).toBe(true);
    expect(() => validateMeshConfig({ node: 'n1', identity: { ca: { controller: true, dir: './ca' } } }, 'stream'))
      .toThrow(MeshConfigError);
  });
});
