/**
 * The identity layer: SPIFFE IDs, the mesh CA, the certificate store with rotation, and
 * peer verification, over real mutual TLS 1.3 on loopback. No mocks; every wait bounded.
 */
import { createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls, { type SecureContext, type TLSSocket } from 'node:tls';
import { inspect } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  acceptMtls, CertificateAuthority, CertificateStore, connectMtls, formatSpiffeId, IdentityError,
  parseSpiffeId, parseSubjectAltName, parseWorkloadId, spiffeIdFromSubjectAltName, TrustBundle, verifyPeerChain,
  workloadId, type MtlsConnection, type PeerVerifyOptions, type RotationEvent, type WorkloadCertificate,
} from '../src/identity/index.js';
import {
  authorityKeyIdentifier, basicConstraints, buildCertificate, distinguishedName, extKeyUsage, keyIdentifier,
  KeyUsage, keyUsage, OID, randomSerial, readCertificateFields, subjectAltNameUris,
} from '../src/identity/x509.js';

const TD = 'cluster.local';
const FRONTEND = workloadId(TD, 'shop', 'frontend');
const BACKEND = workloadId(TD, 'shop', 'backend');

// ---------------------------------------------------------------- bounded waits

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what}: not true within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

class Queue<T> {
  private items: T[] = [];
  private waiters: Array<(t: T) => void> = [];
  push(t: T): void {
    const w = this.waiters.shift();
    if (w) w(t);
    else this.items.push(t);
  }
  next(ms: number, what: string): Promise<T> {
    const have = this.items.shift();
    if (have !== undefined) return Promise.resolve(have);
    return within(new Promise<T>((r) => this.waiters.push(r)), ms, what);
  }
}

// ---------------------------------------------------------------- a mesh TLS server on loopback

type Accepted = { ok: true; conn: MtlsConnection } | { ok: false; error: IdentityError };

interface TestServer {
  port: number;
  accepted: Queue<Accepted>;
  close(): Promise<void>;
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Accepts mutual TLS with the context `context()` gives per connection, verifies the client, echoes. */
async function startServer(context: () => SecureContext, verify: PeerVerifyOptions): Promise<TestServer> {
  const accepted = new Queue<Accepted>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.once('close', () => sockets.delete(raw));
    acceptMtls(raw, { secureContext: context(), verify, handshakeTimeoutMs: 5_000 }).then(
      (conn) => {
        conn.socket.on('error', () => {});
        conn.socket.on('data', (d: Buffer) => conn.socket.write(d));
        accepted.push({ ok: true, conn });
      },
      (error: IdentityError) => accepted.push({ ok: false, error }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const s: TestServer = {
    port: (server.address() as AddressInfo).port,
    accepted,
    close: () => new Promise<void>((r) => {
      for (const sock of sockets) sock.destroy();
      server.close(() => r());
    }),
  };
  cleanups.push(s.close);
  return s;
}

async function connect(port: number, secureContext: SecureContext, verify: PeerVerifyOptions): Promise<MtlsConnection> {
  const conn = await within(connectMtls({ host: '127.0.0.1', port, secureContext, verify, handshakeTimeoutMs: 5_000 }), 6_000, 'client handshake');
  conn.socket.on('error', () => {});
  cleanups.push(() => conn.socket.destroy());
  return conn;
}

/** Sends `msg` and resolves with what comes back (the echo), bounded. */
function echo(socket: TLSSocket, msg: string, ms = 3_000): Promise<string> {
  return within(new Promise<string>((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.length >= msg.length) {
        socket.off('data', onData);
        resolve(got);
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`closed before the echo of "${msg}" (got "${got}")`)));
    socket.write(msg);
  }), ms, `echo of "${msg}"`);
}

function closed(socket: net.Socket, ms = 3_000): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return within(new Promise<void>((r) => socket.once('close', () => r())), ms, 'socket close');
}

/** A context from PEM parts, for certificates the store would never issue. */
function contextOf(key: KeyObject, certs: readonly X509Certificate[], ca: string): SecureContext {
  return tls.createSecureContext({
    key: key.export({ type: 'pkcs8', format: 'pem' }),
    cert: certs.map((c) => c.toString()).join(''),
    ca,
    minVersion: 'TLSv1.3',
  });
}

function store(ca: CertificateAuthority, opts: Partial<ConstructorParameters<typeof CertificateStore>[0]> = {}): CertificateStore {
  const s = new CertificateStore({ issuer: ca, ...opts });
  cleanups.push(() => s.close());
  return s;
}

async function expectIdentityError(p: Promise<unknown> | (() => unknown), reason: IdentityError['reason'], message?: RegExp): Promise<IdentityError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected IdentityError ${reason}`).toBeInstanceOf(IdentityError);
  const e = err as IdentityError;
  expect(e.code).toBe('AMBIT_ERR_IDENTITY');
  expect(e.reason, e.message).toBe(reason);
  if (message) expect(e.message).toMatch(message);
  return e;
}

// One CA shared by most tests: generating keys is cheap, but one root keeps the picture simple.
const root = CertificateAuthority.generateRoot({ trustDomain: TD });
const bundle = TrustBundle.of(TD, root.rootsPem());
const verify: PeerVerifyOptions = { trustBundle: bundle };

// ================================================================ SPIFFE IDs

describe('SPIFFE IDs', () => {
  it('parses, formats and builds workload IDs', () => {
    const id = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/frontend');
    expect(id).toMatchObject({ trustDomain: 'cluster.local', path: '/ns/shop/sa/frontend', segments: ['ns', 'shop', 'sa', 'frontend'] });
    expect(workloadId('cluster.local', 'shop', 'frontend')).toBe('spiffe://cluster.local/ns/shop/sa/frontend');
    expect(formatSpiffeId('example.org')).toBe('spiffe://example.org');
    expect(formatSpiffeId('my_td-1.example.org', 'a', 'b.c')).toBe('spiffe://my_td-1.example.org/a/b.c');
    expect(parseWorkloadId(FRONTEND)).toMatchObject({ namespace: 'shop', serviceAccount: 'frontend' });
    expect(parseSpiffeId('spiffe://td').segments).toEqual([]);
  });

  it.each([
    ['spiffe://Cluster.local/ns/a/sa/b', /lower case/],
    ['spiffe://cluster.local:8080/ns/a/sa/b', /port/],
    ['spiffe://user@cluster.local/ns/a/sa/b', /userinfo/],
    ['spiffe:///ns/a/sa/b', /empty/],
    ['spiffe://cluster.local/ns//sa/b', /must not be empty/],
    ['spiffe://cluster.local/ns/a/sa/b/', /must not be empty/],
    ['spiffe://cluster.local/ns/./sa/b', /"\." or "\.\."/],
    ['spiffe://cluster.local/ns/../sa/b', /"\." or "\.\."/],
    ['spiffe://cluster.local/ns/a/sa/b?x=1', /query/],
    ['spiffe://cluster.local/ns/a/sa/b#f', /fragment/],
    ['spiffe://cluster.local/ns/a%20b/sa/b', /percent/],
    ['SPIFFE://cluster.local/ns/a/sa/b', /scheme/],
    ['https://cluster.local/ns/a/sa/b', /scheme/],
    ['spiffe://clu$ter/ns/a', /may only hold/],
  ])('refuses %s', (uri, why) => {
    const e = (() => {
      try {
        parseSpiffeId(uri);
      } catch (err) {
        return err as IdentityError;
      }
      return undefined;
    })();
    expect(e?.reason).toBe('invalid-spiffe-id');
    expect(e?.message).toMatch(why);
  });

  it('refuses a workload ID of another shape and bad parts', () => {
    expect(() => parseWorkloadId('spiffe://td/ns/a')).toThrow(/not a workload identity/);
    expect(() => workloadId('td', 'a/b', 'c')).toThrow(IdentityError);
    expect(() => workloadId('TD', 'a', 'c')).toThrow(/lower case/);
  });

  it('reads exactly one URI SAN from the subject-alt-name string Node gives', () => {
    expect(spiffeIdFromSubjectAltName('DNS:web.shop, URI:spiffe://cluster.local/ns/shop/sa/web').uri).toBe('spiffe://cluster.local/ns/shop/sa/web');
    expect(() => spiffeIdFromSubjectAltName(undefined)).toThrow(/no SPIFFE ID/);
    expect(() => spiffeIdFromSubjectAltName('DNS:web.shop')).toThrow(/no SPIFFE ID/);
    expect(() => spiffeIdFromSubjectAltName('URI:spiffe://a/x, URI:spiffe://b/y')).toThrow(/2 URI SANs/);
    expect(() => spiffeIdFromSubjectAltName('URI:https://example.org/x')).toThrow(/no valid SPIFFE ID/);
    // Node quotes a value holding ", " so it cannot pose as a second entry.
    expect(parseSubjectAltName('URI:"spiffe://a/x, URI:spiffe://b/y", DNS:z')).toEqual([
      { type: 'URI', value: 'spiffe://a/x, URI:spiffe://b/y' },
      { type: 'DNS', value: 'z' },
    ]);
    expect(() => spiffeIdFromSubjectAltName('URI:"spiffe://a/x, URI:spiffe://b/y"')).toThrow(IdentityError);
  });
});

// ================================================================ the CA

describe('mesh CA', () => {
  it('issues an ECDSA P-256 X.509-SVID that node:crypto and OpenSSL accept', () => {
    const before = Date.now();
    const w = root.issueWorkloadCertificate({ identity: FRONTEND });
    const c = w.certificate;
    expect(c.subjectAltName).toBe(`URI:${FRONTEND}`);
    expect(c.subject ?? '').toBe(''); // an empty Name: the SPIFFE ID is in the SAN only
    expect(c.ca).toBe(false);
    expect(c.keyUsage).toEqual(expect.arrayContaining([OID.serverAuth, OID.clientAuth])); // Node: extended key usage
    expect(c.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(w.privateKey.asymmetricKeyType).toBe('ec');
    expect(c.checkPrivateKey(w.privateKey)).toBe(true);
    expect(c.checkIssued(root.certificate) && c.verify(root.certificate.publicKey)).toBe(true);
    expect(c.serialNumber).toMatch(/^[0-9A-F]{30,34}$/);
    expect(w.notBefore.getTime()).toBeLessThanOrEqual(before - 5 * 60_000 + 1_000);
    expect(w.notBefore.getTime()).toBeGreaterThan(before - 5 * 60_000 - 2_000);
    expect(w.notAfter.getTime() - w.issuedAt.getTime()).toBeGreaterThanOrEqual(24 * 3_600_000);
    expect(w.notAfter.getTime() - w.issuedAt.getTime()).toBeLessThan(24 * 3_600_000 + 1_000);
    expect(new Date(c.validTo).getTime()).toBe(w.notAfter.getTime());
    // Key identifiers: AKI of the leaf = SKI of the root.
    expect(readCertificateFields(root.certificate).subjectKeyIdentifier?.equals(keyIdentifier(root.certificate.publicKey))).toBe(true);
    expect(c.toLegacyObject().ext_key_usage).toEqual([OID.serverAuth, OID.clientAuth]);
    // A second one has a different serial and key.
    const w2 = root.issueWorkloadCertificate({ identity: FRONTEND, ttlMs: 60_000 });
    expect(w2.serialNumber).not.toBe(w.serialNumber);
    expect(w2.notAfter.getTime() - w2.issuedAt.getTime()).toBeLessThan(61_000);
  });

  it('makes CA certificates with CA:true, pathLen and the key identifiers', () => {
    expect(root.certificate.ca).toBe(true);
    expect(root.isRoot).toBe(true);
    expect(readCertificateFields(root.certificate).pathLen).toBe(1);
    const inter = root.createIntermediate();
    expect(inter.certificate.ca).toBe(true);
    expect(inter.isRoot).toBe(false);
    expect(readCertificateFields(inter.certificate).pathLen).toBe(0);
    expect(inter.certificate.checkIssued(root.certificate)).toBe(true);
    expect(inter.roots.map((r) => r.fingerprint256)).toEqual([root.certificate.fingerprint256]);
    // pathLen 0: it may not sign another CA.
    expect(() => inter.createIntermediate()).toThrow(/pathLen 0/);
  });

  it('refuses to issue outside its trust domain or without a path', () => {
    expect(() => root.issueWorkloadCertificate({ identity: workloadId('other.org', 'a', 'b') })).toThrow(/trust domain cluster.local/);
    expect(() => root.issueWorkloadCertificate({ identity: 'spiffe://cluster.local' })).toThrow(/needs a path/);
    expect(() => root.issueWorkloadCertificate({ identity: 'spiffe://cluster.local/ns/../x' })).toThrow(IdentityError);
  });

  it('loads a root and an intermediate from PEM and files, and checks what it loads', async () => {
    const inter = root.createIntermediate();
    const rootPem = root.exportPem();
    const interPem = inter.exportPem();
    const loadedRoot = CertificateAuthority.fromPem({ trustDomain: TD, certPem: rootPem.certPem, keyPem: rootPem.keyPem });
    expect(loadedRoot.certificate.fingerprint256).toBe(root.certificate.fingerprint256);
    expect(loadedRoot.issueWorkloadCertificate({ identity: BACKEND }).certificate.verify(root.certificate.publicKey)).toBe(true);

    const loadedInter = CertificateAuthority.fromPem({ trustDomain: TD, certPem: interPem.certPem, keyPem: interPem.keyPem, chainPem: interPem.chainPem, rootPem: interPem.rootPem });
    expect(loadedInter.intermediates.map((c) => c.fingerprint256)).toEqual([inter.certificate.fingerprint256]);
    const leaf = loadedInter.issueWorkloadCertificate({ identity: BACKEND });
    expect(verifyPeerChain([leaf.certificate, ...leaf.intermediates], verify).path).toHaveLength(3);

    await expectIdentityError(() => CertificateAuthority.fromPem({ trustDomain: TD, certPem: interPem.certPem, keyPem: interPem.keyPem }), 'invalid-ca', /give its root/);
    await expectIdentityError(() => CertificateAuthority.fromPem({ trustDomain: TD, certPem: rootPem.certPem, keyPem: interPem.keyPem }), 'invalid-ca', /does not match/);
    const other = CertificateAuthority.generateRoot({ trustDomain: TD });
    await expectIdentityError(() => CertificateAuthority.fromPem({ trustDomain: TD, certPem: interPem.certPem, keyPem: interPem.keyPem, rootPem: other.rootsPem() }), 'invalid-ca', /does not lead/);
    const w = root.issueWorkloadCertificate({ identity: BACKEND });
    await expectIdentityError(() => CertificateAuthority.fromPem({ trustDomain: TD, certPem: w.certificate.toString(), keyPem: w.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }), 'invalid-ca', /not a CA/);

    const dir = mkdtempSync(join(tmpdir(), 'ambit-ca-'));
    try {
      const created = await CertificateAuthority.loadOrCreate(join(dir, 'ca'), { trustDomain: TD });
      expect(statSync(join(dir, 'ca', 'ca-key.pem')).mode & 0o777).toBe(0o600);
      const again = await CertificateAuthority.loadOrCreate(join(dir, 'ca'), { trustDomain: TD });
      expect(again.certificate.fingerprint256).toBe(created.certificate.fingerprint256);
      // Several starting at once on an empty folder: one generates, the others load it.
      const racing = await Promise.all([1, 2, 3].map(() => CertificateAuthority.loadOrCreate(join(dir, 'race'), { trustDomain: TD })));
      expect(new Set(racing.map((c) => c.certificate.fingerprint256)).size).toBe(1);
      // A key without its certificate (an interrupted generation) is reported, not overwritten.
      mkdirSync(join(dir, 'broken'));
      writeFileSync(join(dir, 'broken', 'ca-key.pem'), 'not a key');
      await expectIdentityError(() => CertificateAuthority.loadOrCreate(join(dir, 'broken'), { trustDomain: TD, waitMs: 200 }), 'invalid-ca', /a CA generation was interrupted/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ================================================================ mutual TLS

describe('mutual TLS between workload identities', () => {
  it('handshakes TLS 1.3 both ways and each side sees the other SPIFFE ID', async () => {
    const node1 = store(root, { localIdentities: [FRONTEND] });
    const node2 = store(root, { localIdentities: [BACKEND] });
    const serverCtx = await node2.secureContext(BACKEND);
    const server = await startServer(() => serverCtx, verify);
    const client = await connect(server.port, await node1.secureContext(FRONTEND), { ...verify, expectedIdentities: [BACKEND] });
    expect(client.peer.identity).toBe(BACKEND);
    expect(client.protocol).toBe('TLSv1.3');
    const acc = await server.accepted.next(3_000, 'server accept');
    expect(acc.ok).toBe(true);
    if (!acc.ok) return;
    expect(acc.conn.peer.identity).toBe(FRONTEND);
    expect(acc.conn.peer.certificate.serialNumber).toBe(node1.certificate(FRONTEND)?.serialNumber);
    expect(acc.conn.protocol).toBe('TLSv1.3');
    expect(acc.conn.cipher).toMatch(/^TLS_/);
    expect(await echo(client.socket, 'ping')).toBe('ping');
  });

  it('verifies a chain through an intermediate; the root alone is the trust anchor', async () => {
    const inter = root.createIntermediate();
    const node1 = store(inter, { localIdentities: [FRONTEND] });
    const node2 = store(root, { localIdentities: [BACKEND] }); // issued by the root directly
    expect(node1.trustBundlePem()).toBe(root.rootsPem());
    const serverCtx = await node2.secureContext(BACKEND);
    const server = await startServer(() => serverCtx, verify);
    const client = await connect(server.port, await node1.secureContext(FRONTEND), verify);
    expect(client.peer.path).toHaveLength(2);
    const acc = await server.accepted.next(3_000, 'server accept');
    expect(acc.ok && acc.conn.peer.identity).toBe(FRONTEND);
    if (!acc.ok) return;
    expect(acc.conn.peer.path.map((c) => c.fingerprint256)).toEqual([
      node1.certificate(FRONTEND)!.fingerprint256, inter.certificate.fingerprint256, root.certificate.fingerprint256,
    ]);
    expect(await echo(client.socket, 'via intermediate')).toBe('via intermediate');
  });

  it('refuses a client certificate from another CA (same trust domain, same names)', async () => {
    const rogue = CertificateAuthority.generateRoot({ trustDomain: TD });
    // It trusts the real root (so it accepts the server), but its own certificate is the rogue CA's.
    const rogueStore = store(rogue, { trustBundle: bundle });
    const serverCtx = await store(root).secureContext(BACKEND);
    const server = await startServer(() => serverCtx, verify);
    const client = await connect(server.port, await rogueStore.secureContext(FRONTEND), { trustBundle: bundle });
    const acc = await server.accepted.next(3_000, 'server refusal');
    expect(acc.ok).toBe(false);
    if (acc.ok) return;
    expect(acc.error.reason).toBe('unknown-ca');
    expect(acc.error.message).toMatch(/unknown CA/);
    await closed(client.socket);
  });

  it('refuses a server certificate from another CA on the client side', async () => {
    const rogue = CertificateAuthority.generateRoot({ trustDomain: TD });
    const serverCtx = await store(rogue).secureContext(BACKEND);
    const server = await startServer(() => serverCtx, { trustBundle: TrustBundle.of(TD, rogue.rootsPem()) });
    const ctx = await store(root).secureContext(FRONTEND);
    await expectIdentityError(connectMtls({ host: '127.0.0.1', port: server.port, secureContext: ctx, verify, handshakeTimeoutMs: 5_000 }), 'unknown-ca', /unknown CA/);
  });

  it('refuses an expired certificate with the time it expired', async () => {
    const now = Date.now();
    const old = root.issueWorkloadCertificate({ identity: FRONTEND, notBefore: new Date(now - 2 * 3_600_000), notAfter: new Date(now - 3_600_000) });
    const serverCtx = await store(root).secureContext(BACKEND);
    const server = await startServer(() => serverCtx, verify);
    const client = await connect(server.port, contextOf(old.privateKey, [old.certificate], bundle.pem()), verify);
    const acc = await server.accepted.next(3_000, 'server refusal');
    expect(acc.ok).toBe(false);
    if (acc.ok) return;
    expect(acc.error.reason).toBe('expired');
    expect(acc.error.message).toContain(`peer certificate expired at ${old.notAfter.toISOString()}`);
    await closed(client.socket);

    // And a client refuses an expired server certificate.
    const expiredServer = await startServer(() => contextOf(old.privateKey, [old.certificate], bundle.pem()), verify);
    const ctx = await store(root).secureContext(BACKEND);
    await expectIdentityError(connectMtls({ host: '127.0.0.1', port: expiredServer.port, secureContext: ctx, verify, handshakeTimeoutMs: 5_000 }), 'expired', /expired/);
  });

  it('refuses a certificate without a SPIFFE ID', async () => {
    // Signed by the real CA, but with a DNS SAN and a CN instead of a SPIFFE URI SAN.
    const caKey = createPrivateKey(root.exportPem().keyPem);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const now = Date.now();
    const der = buildCertificate({
      serial: randomSerial(),
      issuer: readCertificateFields(root.certificate).subject,
      subject: distinguishedName({ commonName: 'frontend.shop' }),
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
      publicKey,
      extensions: [
        basicConstraints(false),
        keyUsage([KeyUsage.digitalSignature]),
        extKeyUsage([OID.serverAuth, OID.clientAuth]),
        authorityKeyIdentifier(keyIdentifier(root.certificate.publicKey)),
      ],
    }, caKey);
    const noSan = new X509Certificate(der);
    expect(noSan.verify(root.certificate.publicKey)).toBe(true);
    const serverCtx = await store(root).secureContext(BACKEND);
    const server = await startServer(() => serverCtx, verify);
    const client = await connect(server.port, contextOf(privateKey, [noSan], bundle.pem()), verify);
    const acc = await server.accepted.next(3_000, 'server refusal');
    expect(acc.ok).toBe(false);
    if (acc.ok) return;
    expect(acc.error.reason).toBe('no-spiffe-id');
    expect(acc.error.message).toMatch(/no SPIFFE ID/);
    await closed(client.socket);
  });

  it('refuses a trust domain that is not allowed, and a cross-trust-domain forgery', async () => {
    const foreign = CertificateAuthority.generateRoot({ trustDomain: 'partner.example' });
    const federated = new TrustBundle().set(TD, root.roots).set('partner.example', foreign.roots);
    const serverCtx = await store(root, { trustBundle: federated }).secureContext(BACKEND);
    const partnerId = workloadId('partner.example', 'ns1', 'api');
    const partnerCtx = await store(foreign, { trustBundle: federated }).secureContext(partnerId);

    const strict = await startServer(() => serverCtx, { trustBundle: federated, allowedTrustDomains: [TD] });
    const c1 = await connect(strict.port, partnerCtx, { trustBundle: federated });
    const refused = await strict.accepted.next(3_000, 'server refusal');
    expect(refused.ok).toBe(false);
    if (refused.ok) return;
    expect(refused.error.reason).toBe('trust-domain-not-allowed');
    expect(refused.error.message).toMatch(/trust domain partner\.example not allowed/);
    await closed(c1.socket);

    const open = await startServer(() => serverCtx, { trustBundle: federated });
    await connect(open.port, partnerCtx, { trustBundle: federated });
    const ok = await open.accepted.next(3_000, 'server accept');
    expect(ok.ok && ok.conn.peer.identity).toBe(partnerId);

    // The partner's CA signs a cluster.local identity: OpenSSL would accept the chain (the
    // root is in `ca`), but a cluster.local ID must chain to a cluster.local root.
    const forged = new X509Certificate(buildCertificate({
      serial: randomSerial(),
      issuer: readCertificateFields(foreign.certificate).subject,
      subject: distinguishedName({}),
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3_600_000),
      publicKey: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey,
      extensions: [basicConstraints(false), subjectAltNameUris([FRONTEND], true), authorityKeyIdentifier(keyIdentifier(foreign.certificate.publicKey))],
    }, createPrivateKey(foreign.exportPem().keyPem)));
    expect(() => verifyPeerChain([forged], { trustBundle: federated })).toThrow(/unknown CA/);
  });

  it('refuses a client that speaks only TLS 1.2', async () => {
    const node1 = store(root);
    const serverCtx = await store(root).secureContext(BACKEND);
    const server = await startServer(() => serverCtx, verify);
    const w = await node1.acquire(FRONTEND);
    const client = tls.connect({
      host: '127.0.0.1',
      port: server.port,
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      key: w.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      cert: w.certChainPem,
      ca: bundle.pem(),
      checkServerIdentity: () => undefined,
    });
    cleanups.push(() => client.destroy());
    const outcome = await within(new Promise<Error | 'connected'>((r) => {
      client.once('error', r);
      client.once('secureConnect', () => r('connected'));
    }), 5_000, 'TLS 1.2 client');
    expect(outcome).toBeInstanceOf(Error);
    expect(String((outcome as NodeJS.ErrnoException).code)).toMatch(/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|VERSION/);
    const acc = await server.accepted.next(3_000, 'server refusal');
    expect(acc.ok).toBe(false);
    if (acc.ok) return;
    expect(acc.error.reason).toBe('handshake-failed');
    expect(acc.error.message).toMatch(/only TLS 1\.3/);
  });

  it('lets a client pin the server identity', async () => {
    const serverCtx = await store(root).secureContext(BACKEND);
    const server = await startServer(() => serverCtx, verify);
    const ctx = await store(root).secureContext(FRONTEND);
    const reviews = workloadId(TD, 'shop', 'reviews');
    await expectIdentityError(
      connectMtls({ host: '127.0.0.1', port: server.port, secureContext: ctx, verify: { ...verify, expectedIdentities: [reviews] }, handshakeTimeoutMs: 5_000 }),
      'identity-mismatch',
      new RegExp(`peer is ${BACKEND}, expected ${reviews}`),
    );
  });
});

// ================================================================ the store

describe('certificate store', () => {
  it('holds certificates only for local workloads and issues once for concurrent callers', async () => {
    const s = store(root, { localIdentities: [FRONTEND] });
    const [a, b] = await Promise.all([s.acquire(FRONTEND), s.acquire(FRONTEND)]);
    expect(a.serialNumber).toBe(b.serialNumber);
    await expectIdentityError(s.acquire(BACKEND), 'not-local', /not a workload on this node/);
    expect(s.isLocal(FRONTEND)).toBe(true);
    expect(s.isLocal(BACKEND)).toBe(false);
    expect(s.isLocal('not a spiffe id')).toBe(false);
    await expectIdentityError(s.acquire(workloadId('other.org', 'a', 'b')), 'not-local', /trust domain/);
    s.setLocalIdentities([BACKEND]);
    expect(s.has(FRONTEND)).toBe(false);
    expect((await s.acquire(BACKEND)).identity).toBe(BACKEND);
    expect(s.identities()).toEqual([BACKEND]);
    s.close();
    await expectIdentityError(s.acquire(BACKEND), 'closed');
    expect(s.currentSecureContext(BACKEND)).toBeUndefined();
  });

  it('rotates before expiry without dropping an open connection; new handshakes get the new certificate', async () => {
    const node1 = store(root, { ttlMs: 3_000, localIdentities: [FRONTEND] });
    const node2 = store(root, { ttlMs: 3_000, localIdentities: [BACKEND] });
    const rotations: RotationEvent[] = [];
    node1.on('rotated', (e) => rotations.push(e));
    node2.on('rotated', (e) => rotations.push(e));
    const first1 = await node1.acquire(FRONTEND);
    const first2 = await node2.acquire(BACKEND);
    const issued = new Set([first1.serialNumber, first2.serialNumber]);
    node1.on('rotated', (e) => issued.add(e.current.serialNumber));
    node2.on('rotated', (e) => issued.add(e.current.serialNumber));

    // The server picks the identity's current context per connection, as the HBONE listener will.
    const server = await startServer(() => node2.currentSecureContext(BACKEND)!, verify);
    const longLived = await connect(server.port, node1.currentSecureContext(FRONTEND)!, verify);
    const accepted = await server.accepted.next(3_000, 'first accept');
    expect(accepted.ok && accepted.conn.peer.certificate.serialNumber).toBe(first1.serialNumber);
    expect(longLived.peer.certificate.serialNumber).toBe(first2.serialNumber);
    expect(await echo(longLived.socket, 'before rotation')).toBe('before rotation');

    // Both rotate at about half their ~3 s lifetime.
    await until(() => rotations.some((r) => r.identity === FRONTEND) && rotations.some((r) => r.identity === BACKEND), 5_000, 'rotation of both identities');
    const r1 = rotations.find((r) => r.identity === FRONTEND)!;
    expect(r1.previous.serialNumber).toBe(first1.serialNumber);
    expect(r1.current.serialNumber).not.toBe(first1.serialNumber);
    expect(r1.current.notAfter.getTime()).toBeGreaterThan(first1.notAfter.getTime());
    // Rotated before the old certificate expired.
    expect(r1.current.issuedAt.getTime()).toBeLessThan(first1.notAfter.getTime());
    expect(node1.describe().certificates[0]?.previous?.serialNumber).toBe(first1.serialNumber);

    // New handshakes get new certificates, both ways.
    const fresh = await connect(server.port, node1.currentSecureContext(FRONTEND)!, verify);
    const acceptedFresh = await server.accepted.next(3_000, 'accept after rotation');
    expect(acceptedFresh.ok).toBe(true);
    if (!acceptedFresh.ok) return;
    for (const serial of [fresh.peer.certificate.serialNumber, acceptedFresh.conn.peer.certificate.serialNumber]) {
      expect(issued.has(serial)).toBe(true);
      expect([first1.serialNumber, first2.serialNumber]).not.toContain(serial);
    }
    expect(await echo(fresh.socket, 'new handshake')).toBe('new handshake');

    // The connection opened before rotation still works, even past the old certificates' expiry.
    const oldExpiry = Math.max(first1.notAfter.getTime(), first2.notAfter.getTime());
    await until(() => Date.now() > oldExpiry + 200, 6_000, 'old certificates expired');
    expect(longLived.socket.destroyed).toBe(false);
    expect(await echo(longLived.socket, 'after rotation')).toBe('after rotation');
    expect(longLived.socket.getPeerCertificate().serialNumber).toBe(first2.serialNumber);
  });

  it('reports a failed rotation and keeps serving the current certificate', async () => {
    let fail = false;
    const flaky = {
      trustDomain: TD,
      trustAnchors: () => root.trustAnchors(),
      issueWorkloadCertificate: (req: Parameters<CertificateAuthority['issueWorkloadCertificate']>[0]): WorkloadCertificate => {
        if (fail) throw new Error('CA unreachable');
        return root.issueWorkloadCertificate(req);
      },
    };
    const s = store(root, { issuer: flaky, ttlMs: 60_000, retryMinMs: 50 });
    const first = await s.acquire(FRONTEND);
    const failures: string[] = [];
    s.on('rotationFailed', (e) => failures.push(`${e.error.reason}: ${e.error.message}`));
    fail = true;
    await expectIdentityError(s.rotate(FRONTEND), 'issue-failed', /CA unreachable/);
    expect(failures[0]).toMatch(/issue-failed: .*CA unreachable/);
    expect(s.certificate(FRONTEND)?.serialNumber).toBe(first.serialNumber);
    fail = false;
    // The retry (50 ms) succeeds by itself.
    await until(() => s.certificate(FRONTEND)?.serialNumber !== first.serialNumber, 3_000, 'retried rotation');
  });

  it('describe() shows fingerprints, serials, SANs and expiry, and never key material', async () => {
    const inter = root.createIntermediate();
    const s = store(inter, { localIdentities: [FRONTEND, BACKEND] });
    const a = await s.acquire(FRONTEND);
    await s.acquire(BACKEND);
    const previous = a;
    await s.rotate(FRONTEND);
    const dump = s.describe();
    const json = JSON.stringify(dump);
    expect(dump.trustDomain).toBe(TD);
    expect(dump.trustBundle.map((r) => r.fingerprint256)).toEqual([root.certificate.fingerprint256]);
    const entry = dump.certificates.find((c) => c.identity === FRONTEND)!;
    expect(entry.current.subjectAltName).toBe(`URI:${FRONTEND}`);
    expect(entry.current.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(entry.current.chain[0]?.serialNumber).toBe(inter.certificate.serialNumber);
    expect(entry.previous?.serialNumber).toBe(previous.serialNumber);
    expect(Date.parse(entry.current.notAfter)).toBeGreaterThan(Date.now());

    expect(json).not.toMatch(/PRIVATE KEY/);
    const keys = [previous.privateKey, s.certificate(FRONTEND)!.privateKey, s.certificate(BACKEND)!.privateKey];
    for (const k of keys) {
      const pemBody = (k.export({ type: 'pkcs8', format: 'pem' }) as string).replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
      const sec1Body = (k.export({ type: 'sec1', format: 'pem' }) as string).replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
      for (const body of [pemBody, sec1Body]) {
        expect(json).not.toContain(body);
        for (const chunk of body.match(/.{32}/g) ?? []) expect(json).not.toContain(chunk);
      }
      const d = (k.export({ format: 'jwk' }) as { d?: string }).d!;
      expect(json).not.toContain(d);
      expect(json).not.toContain(Buffer.from(d, 'base64url').toString('hex'));
    }
    // Nor do the CA's description, a certificate object or the store itself when logged.
    const caKeyBody = root.exportPem().keyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
    const elsewhere = [JSON.stringify(inter.describe()), JSON.stringify(root.describe()), JSON.stringify(a), inspect(s, { depth: 6 }), inspect(root, { depth: 6 })].join('\n');
    expect(elsewhere).not.toMatch(/PRIVATE KEY/);
    expect(elsewhere).not.toContain(caKeyBody.slice(0, 40));
  });
});

afterAll(() => {
  for (const c of cleanups.splice(0)) c();
});
