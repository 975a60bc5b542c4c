/**
 * The mesh CA: a root generated on first start or loaded from files, optionally an
 * intermediate signed by a root, and issuance of workload certificates (X.509-SVIDs).
 *
 * Certificates are built with node-forge's ASN.1 and signed with `node:crypto` (see
 * x509.ts for why). Defaults, all overridable:
 *
 * | what | default |
 * |---|---|
 * | CA key | ECDSA P-256 (`ec-p256`); P-384 and RSA 2048/3072 can be chosen, loaded CAs may also be Ed25519 |
 * | root lifetime | 10 years, basicConstraints CA:true pathLen 1, keyUsage keyCertSign+cRLSign (critical) |
 * | intermediate lifetime | 1 year (never past its parent), pathLen 0 |
 * | workload key | always ECDSA P-256 |
 * | workload lifetime | 24 h (`ttlMs`), never past the CA chain's own expiry |
 * | workload notBefore | backdated 5 min for clock skew |
 * | workload extensions | SAN = the SPIFFE ID only (critical, as the subject is empty), keyUsage digitalSignature (critical), EKU serverAuth+clientAuth, basicConstraints CA:false (critical), SKI, AKI |
 * | serial | random 128 bits, positive |
 *
 * The chain sent to peers is leaf + intermediates; roots are trust anchors only.
 * Private keys stay in `KeyObject`s (which serialise to nothing); the only way to read a
 * CA key as PEM is `exportPem()`, for persisting it.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';
import { IdentityError } from './errors.js';
import { parseSpiffeId, validateTrustDomain } from './spiffe.js';
import {
  authorityKeyIdentifier, basicConstraints, buildCertificate, certificatesPem, distinguishedName, emptyName,
  extKeyUsage, issuedBy, isSelfSigned, keyIdentifier, KeyUsage, keyUsage, notAfter, notBefore, OID,
  parseCertificates, randomSerial, readCertificateFields, subjectAltNameHosts, subjectAltNameUris, subjectKeyIdentifier, subjectText, signatureAlgorithm,
  type CertificateFields, type Extension,
} from './x509.js';

const HOUR = 3_600_000;

/** An IP address as the 4 or 16 bytes of an iPAddress SAN. */
function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) throw new IdentityError('issue-failed', `${ip} is not an IP address`);
  const [head, tail = ''] = ip.split('::');
  const parts = (s: string) => (s === '' ? [] : s.split(':'));
  const h = parts(head!);
  const t = parts(tail);
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return Buffer.from(groups.flatMap((g) => { const n = parseInt(g, 16); return [n >> 8, n & 0xff]; }));
}
export const DEFAULT_WORKLOAD_TTL_MS = 24 * HOUR;
export const DEFAULT_ROOT_TTL_MS = 10 * 365 * 24 * HOUR;
export const DEFAULT_INTERMEDIATE_TTL_MS = 365 * 24 * HOUR;
export const DEFAULT_CLOCK_SKEW_MS = 5 * 60_000;
export const DEFAULT_ROOT_PATH_LEN = 1;
export const DEFAULT_INTERMEDIATE_PATH_LEN = 0;
export const DEFAULT_ORGANIZATION = 'Ambit';

/** File names in a CA directory: the same as Istio's plug-in CA secret (`cacerts`). */
export const CA_FILES = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  chain: 'cert-chain.pem',
  root: 'root-cert.pem',
} as const;

export type CaKeyAlgorithm = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072';

function generateKey(alg: CaKeyAlgorithm): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (alg) {
    case 'ec-p256': return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    case 'ec-p384': return generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    case 'rsa-2048': return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'rsa-3072': return generateKeyPairSync('rsa', { modulusLength: 3072 });
  }
}

/** An issued workload certificate with its key. */
export interface WorkloadCertificate {
  /** The SPIFFE ID in the certificate's URI SAN. */
  readonly identity: string;
  readonly trustDomain: string;
  readonly certificate: X509Certificate;
  /** The intermediates to send after the leaf (no root). */
  readonly intermediates: readonly X509Certificate[];
  /** Leaf + intermediates as PEM: the `cert` of a TLS context. */
  readonly certChainPem: string;
  /** The private key: a KeyObject, so it never lands in JSON or logs by accident. */
  readonly privateKey: KeyObject;
  /** Upper-case hex, as `X509Certificate.serialNumber`. */
  readonly serialNumber: string;
  readonly fingerprint256: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** When it was issued: the start of its lifetime for rotation (notBefore is backdated). */
  readonly issuedAt: Date;
}

export interface WorkloadCertificateRequest {
  /** The SPIFFE ID to certify; must be in the issuer's trust domain and have a path. */
  readonly identity: string;
  /** Lifetime from now; default 24 h. */
  readonly ttlMs?: number;
  /** How far notBefore is set before now; default 5 min. */
  readonly backdateMs?: number;
  /** An explicit validity window (overrides ttlMs/backdateMs), e.g. a past one for tests. */
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** Whatever issues workload certificates: this local CA now, a remote CA (CSR over gRPC) later. */
export interface CertificateIssuer {
  readonly trustDomain: string;
  issueWorkloadCertificate(req: WorkloadCertificateRequest): WorkloadCertificate | Promise<WorkloadCertificate>;
  /** The roots that peers must trust for what this issuer issues. */
  trustAnchors(): readonly X509Certificate[];
}

export interface GenerateRootOptions {
  readonly trustDomain: string;
  /** Default `Ambit root CA <trustDomain>`. */
  readonly commonName?: string;
  /** Default `Ambit`. */
  readonly organization?: string;
  /** Default 10 years. */
  readonly ttlMs?: number;
  /** Default 1: the root may sign one level of intermediates. */
  readonly pathLen?: number;
  /** Default `ec-p256`. */
  readonly keyAlgorithm?: CaKeyAlgorithm;
}

export interface CreateIntermediateOptions {
  /** Default `Ambit intermediate CA <trustDomain>`. */
  readonly commonName?: string;
  readonly organization?: string;
  /** Default 1 year, never past the parent's expiry. */
  readonly ttlMs?: number;
  /** Default 0: signs workloads only. */
  readonly pathLen?: number;
  readonly keyAlgorithm?: CaKeyAlgorithm;
}

export interface LoadCaOptions {
  readonly trustDomain: string;
  /** The signing CA's certificate (a root, or an intermediate). */
  readonly certPem: string;
  /** Its private key (PKCS#8, SEC1 or PKCS#1 PEM). */
  readonly keyPem: string;
  /** Certificates between the CA and the root; may also hold the CA and the root (Istio's cert-chain.pem). */
  readonly chainPem?: string;
  /** The trust anchors; required for an intermediate, defaults to the CA itself for a root. */
  readonly rootPem?: string;
}

export interface CaFileOptions {
  readonly trustDomain: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly chainFile?: string;
  readonly rootFile?: string;
}

/** A certificate's public facts: what /config_dump shows. Never key material. */
export interface CertificateSummary {
  readonly subject: string;
  readonly subjectAltName?: string;
  readonly serialNumber: string;
  readonly fingerprint256: string;
  readonly notBefore: string;
  readonly notAfter: string;
}

export function summarizeCertificate(cert: X509Certificate): CertificateSummary {
  return {
    // Node gives undefined for an empty Name (workload certificates have one).
    subject: cert.subject ?? '',
    ...(cert.subjectAltName ? { subjectAltName: cert.subjectAltName } : {}),
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
    notBefore: notBefore(cert).toISOString(),
    notAfter: notAfter(cert).toISOString(),
  };
}

function fingerprintSet(certs: readonly X509Certificate[]): X509Certificate[] {
  const seen = new Set<string>();
  return certs.filter((c) => (seen.has(c.fingerprint256) ? false : (seen.add(c.fingerprint256), true)));
}

function seconds(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

export class CertificateAuthority implements CertificateIssuer {
  readonly trustDomain: string;
  /** This CA's own certificate. */
  readonly certificate: X509Certificate;
  /** Sent after a leaf: this CA (when not a root) and the intermediates above it, root excluded. */
  readonly intermediates: readonly X509Certificate[];
  /** The trust anchors. */
  readonly roots: readonly X509Certificate[];
  /** The earliest expiry along this CA's chain up to its root: nothing it signs may outlive it. */
  readonly notAfter: Date;
  readonly #key: KeyObject;
  readonly #fields: CertificateFields;
  readonly #keyId: Buffer;

  private constructor(trustDomain: string, certificate: X509Certificate, key: KeyObject, intermediates: readonly X509Certificate[], roots: readonly X509Certificate[]) {
    this.trustDomain = trustDomain;
    this.certificate = certificate;
    this.#key = key;
    this.intermediates = intermediates;
    this.roots = roots;
    this.#fields = readCertificateFields(certificate);
    this.#keyId = this.#fields.subjectKeyIdentifier ?? keyIdentifier(certificate.publicKey);
    const top = intermediates[intermediates.length - 1] ?? certificate;
    const anchor = roots.find((r) => r.fingerprint256 === top.fingerprint256 || issuedBy(top, r));
    const path = [certificate, ...intermediates, ...(anchor ? [anchor] : [])];
    this.notAfter = new Date(Math.min(...path.map((c) => notAfter(c).getTime())));
  }

  /** A new self-signed root CA. */
  static generateRoot(opts: GenerateRootOptions): CertificateAuthority {
    const td = validateTrustDomain(opts.trustDomain);
    const { privateKey, publicKey } = generateKey(opts.keyAlgorithm ?? 'ec-p256');
    const name = distinguishedName({ organization: opts.organization ?? DEFAULT_ORGANIZATION, commonName: opts.commonName ?? `Ambit root CA ${td}` });
    const keyId = keyIdentifier(publicKey);
    const now = Date.now();
    const der = buildCertificate({
      serial: randomSerial(),
      issuer: name,
      subject: name,
      notBefore: seconds(now - DEFAULT_CLOCK_SKEW_MS),
      notAfter: seconds(now + (opts.ttlMs ?? DEFAULT_ROOT_TTL_MS)),
      publicKey,
      extensions: [
        basicConstraints(true, opts.pathLen ?? DEFAULT_ROOT_PATH_LEN),
        keyUsage([KeyUsage.keyCertSign, KeyUsage.cRLSign]),
        subjectKeyIdentifier(keyId),
        authorityKeyIdentifier(keyId),
      ],
    }, privateKey);
    const cert = new X509Certificate(der);
    return new CertificateAuthority(td, cert, privateKey, [], [cert]);
  }

  /** Loads a CA from PEM: checks the key matches, the certificate is a valid CA, and it chains to a root. */
  static fromPem(opts: LoadCaOptions): CertificateAuthority {
    const td = validateTrustDomain(opts.trustDomain);
    const [cert, ...rest] = parseCertificates(opts.certPem, 'CA certificate');
    if (!cert) throw new IdentityError('invalid-ca', 'the CA certificate PEM holds no certificate');
    let key: KeyObject;
    try {
      key = createPrivateKey(opts.keyPem);
    } catch (e) {
      throw new IdentityError('invalid-ca', `the CA key cannot be read: ${(e as Error).message}`, { cause: e });
    }
    if (!cert.checkPrivateKey(key)) throw new IdentityError('invalid-ca', `the CA key does not match the CA certificate ${subjectText(cert)}`);
    if (!cert.ca) throw new IdentityError('invalid-ca', `${subjectText(cert)} is not a CA certificate (basicConstraints CA:false): give the CA's certificate`);
    const now = Date.now();
    if (notAfter(cert).getTime() <= now) throw new IdentityError('invalid-ca', `the CA certificate ${subjectText(cert)} expired at ${notAfter(cert).toISOString()}`);
    signatureAlgorithm(key); // throws for a key type or curve it cannot sign with

    const chain = [...rest, ...parseCertificates(opts.chainPem ?? '', 'CA chain')];
    const givenRoots = parseCertificates(opts.rootPem ?? '', 'CA root');
    const selfSigned = isSelfSigned(cert);
    if (!selfSigned && givenRoots.length === 0) {
      throw new IdentityError('invalid-ca', `${subjectText(cert)} is an intermediate CA: give its root (rootPem / ${CA_FILES.root}) as the trust anchor`);
    }
    const roots = fingerprintSet(selfSigned ? [cert, ...givenRoots] : givenRoots);
    for (const r of roots) {
      if (!r.ca || !isSelfSigned(r)) throw new IdentityError('invalid-ca', `trust anchor ${subjectText(r)} is not a self-signed CA certificate`);
    }
    // Walk cert → intermediates → a root. A root CA sends no intermediates.
    const intermediates: X509Certificate[] = selfSigned ? [] : [cert];
    let cur = cert;
    while (!roots.some((r) => r.fingerprint256 === cur.fingerprint256 || issuedBy(cur, r))) {
      if (intermediates.length > 8) throw new IdentityError('invalid-ca', `the CA chain of ${subjectText(cert)} is longer than 8`);
      const from = cur;
      const parent = chain.find((c) => c.fingerprint256 !== from.fingerprint256 && !isSelfSigned(c) && issuedBy(from, c));
      if (!parent) throw new IdentityError('invalid-ca', `the CA chain does not lead from ${subjectText(cur)} (issuer ${subjectText(cur, 'issuer')}) to the given root: add the missing intermediate to the chain`);
      if (!parent.ca) throw new IdentityError('invalid-ca', `${subjectText(parent)} in the CA chain is not a CA certificate`);
      intermediates.push(parent);
      cur = parent;
    }
    return new CertificateAuthority(td, cert, key, fingerprintSet(intermediates), roots);
  }

  /** Loads a CA from PEM files. */
  static async fromFiles(opts: CaFileOptions): Promise<CertificateAuthority> {
    const read = async (f: string): Promise<string> => {
      try {
        return await readFile(f, 'utf8');
      } catch (e) {
        throw new IdentityError('invalid-ca', `cannot read CA file ${f}: ${(e as Error).message}`, { cause: e });
      }
    };
    return CertificateAuthority.fromPem({
      trustDomain: opts.trustDomain,
      certPem: await read(opts.certFile),
      keyPem: await read(opts.keyFile),
      ...(opts.chainFile ? { chainPem: await read(opts.chainFile) } : {}),
      ...(opts.rootFile ? { rootPem: await read(opts.rootFile) } : {}),
    });
  }

  /**
   * Loads the CA from `dir` (ca-cert.pem, ca-key.pem, optional cert-chain.pem and
   * root-cert.pem), or, when ca-cert.pem is absent, generates a root there (the key file
   * mode 0600). Safe when several processes start on the same empty folder: the one that
   * creates ca-key.pem generates, writing ca-cert.pem last and whole (rename); the others
   * wait for it (up to `waitMs`, default 10 s) and load it.
   */
  static async loadOrCreate(dir: string, opts: GenerateRootOptions & { waitMs?: number }): Promise<CertificateAuthority> {
    const exists = async (f: string): Promise<boolean> => readFile(join(dir, f)).then(() => true, () => false);
    const load = async () => CertificateAuthority.fromFiles({
      trustDomain: opts.trustDomain,
      certFile: join(dir, CA_FILES.cert),
      keyFile: join(dir, CA_FILES.key),
      ...((await exists(CA_FILES.chain)) ? { chainFile: join(dir, CA_FILES.chain) } : {}),
      ...((await exists(CA_FILES.root)) ? { rootFile: join(dir, CA_FILES.root) } : {}),
    });
    if (await exists(CA_FILES.cert)) return load();
    const ca = CertificateAuthority.generateRoot(opts);
    const pem = ca.exportPem();
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      await writeFile(join(dir, CA_FILES.key), pem.keyPem, { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // Another process is generating the CA here: wait for its certificate.
      const waitMs = opts.waitMs ?? 10_000;
      for (const end = Date.now() + waitMs; !(await exists(CA_FILES.cert));) {
        if (Date.now() > end) {
          throw new IdentityError('invalid-ca', `${join(dir, CA_FILES.key)} exists but ${CA_FILES.cert} did not appear within ${waitMs} ms: a CA generation was interrupted? Remove the key file to generate a new CA, or add its certificate`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      return load();
    }
    await writeFile(join(dir, CA_FILES.chain), pem.chainPem, { mode: 0o644 });
    await writeFile(join(dir, CA_FILES.root), pem.rootPem, { mode: 0o644 });
    const partial = join(dir, `.${CA_FILES.cert}.${process.pid}.${randomBytes(4).toString('hex')}`);
    await writeFile(partial, pem.certPem, { mode: 0o644 });
    await rename(partial, join(dir, CA_FILES.cert));
    return ca;
  }

  get isRoot(): boolean {
    return this.intermediates.length === 0;
  }

  get certPem(): string {
    return this.certificate.toString();
  }

  trustAnchors(): readonly X509Certificate[] {
    return this.roots;
  }

  /** The roots as PEM: the trust bundle of this CA's trust domain. */
  rootsPem(): string {
    return certificatesPem(this.roots);
  }

  /** An intermediate CA signed by this one. */
  createIntermediate(opts: CreateIntermediateOptions = {}): CertificateAuthority {
    const parentPathLen = this.#fields.pathLen;
    if (parentPathLen !== undefined && parentPathLen < 1) {
      throw new IdentityError('invalid-ca', `${subjectText(this.certificate)} has pathLen ${parentPathLen}: it cannot sign an intermediate CA`);
    }
    const pathLen = opts.pathLen ?? DEFAULT_INTERMEDIATE_PATH_LEN;
    if (parentPathLen !== undefined && pathLen > parentPathLen - 1) {
      throw new IdentityError('invalid-ca', `pathLen ${pathLen} exceeds what ${subjectText(this.certificate)} allows (${parentPathLen - 1})`);
    }
    const { privateKey, publicKey } = generateKey(opts.keyAlgorithm ?? 'ec-p256');
    const keyId = keyIdentifier(publicKey);
    const now = Date.now();
    const der = buildCertificate({
      serial: randomSerial(),
      issuer: this.#fields.subject,
      subject: distinguishedName({ organization: opts.organization ?? DEFAULT_ORGANIZATION, commonName: opts.commonName ?? `Ambit intermediate CA ${this.trustDomain}` }),
      notBefore: seconds(now - DEFAULT_CLOCK_SKEW_MS),
      notAfter: seconds(Math.min(now + (opts.ttlMs ?? DEFAULT_INTERMEDIATE_TTL_MS), this.notAfter.getTime())),
      publicKey,
      extensions: [
        basicConstraints(true, pathLen),
        keyUsage([KeyUsage.keyCertSign, KeyUsage.cRLSign]),
        subjectKeyIdentifier(keyId),
        authorityKeyIdentifier(this.#keyId),
      ],
    }, this.#key);
    const cert = this.#selfCheck(new X509Certificate(der));
    return new CertificateAuthority(this.trustDomain, cert, privateKey, [cert, ...this.intermediates], this.roots);
  }

  /** Issues a workload certificate (X.509-SVID) with a fresh ECDSA P-256 key. */
  issueWorkloadCertificate(req: WorkloadCertificateRequest): WorkloadCertificate {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    return { ...this.signWorkloadKey(req, publicKey), privateKey };
  }

  /**
   * Signs a workload certificate for a key held elsewhere (a node proxy's certificate
   * request, see ./csr.ts): same checks and extensions as `issueWorkloadCertificate`.
   */
  signWorkloadKey(req: WorkloadCertificateRequest, publicKey: KeyObject): Omit<WorkloadCertificate, 'privateKey'> {
    const id = parseSpiffeId(req.identity);
    if (id.trustDomain !== this.trustDomain) {
      throw new IdentityError('issue-failed', `cannot issue ${req.identity}: this CA issues for trust domain ${this.trustDomain}`);
    }
    if (id.path === '') throw new IdentityError('issue-failed', `cannot issue ${req.identity}: a workload SPIFFE ID needs a path (/ns/<ns>/sa/<sa>)`);
    const { cert, from, until, now } = this.#sign(req, publicKey, [
      extKeyUsage([OID.serverAuth, OID.clientAuth]),
      subjectAltNameUris([id.uri], true),
    ], emptyName(), req.identity);
    return {
      identity: id.uri,
      trustDomain: id.trustDomain,
      certificate: cert,
      intermediates: this.intermediates,
      certChainPem: certificatesPem([cert, ...this.intermediates]),
      serialNumber: cert.serialNumber,
      fingerprint256: cert.fingerprint256,
      notBefore: from,
      notAfter: until,
      issuedAt: new Date(now),
    };
  }

  /**
   * A TLS server certificate for DNS names and IP addresses (no SPIFFE ID), with a fresh
   * ECDSA P-256 key: what the controller's gRPC listener presents to node proxies.
   */
  issueServerCertificate(opts: { dnsNames: readonly string[]; ipAddresses?: readonly string[]; ttlMs?: number }): { certChainPem: string; keyPem: string; notAfter: Date } {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const ips = (opts.ipAddresses ?? []).map(ipBytes);
    const name = opts.dnsNames[0] ?? opts.ipAddresses?.[0] ?? 'server';
    const { cert, until } = this.#sign({ identity: name, ttlMs: opts.ttlMs ?? DEFAULT_WORKLOAD_TTL_MS }, publicKey, [
      extKeyUsage([OID.serverAuth]),
      subjectAltNameHosts(opts.dnsNames, ips),
    ], distinguishedName({ commonName: name }), name);
    return {
      certChainPem: certificatesPem([cert, ...this.intermediates]),
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      notAfter: until,
    };
  }

  #sign(req: WorkloadCertificateRequest, publicKey: KeyObject, extensions: Extension[], subject: ReturnType<typeof emptyName>, what: string) {
    const ttl = req.ttlMs ?? DEFAULT_WORKLOAD_TTL_MS;
    if (!(ttl > 0)) throw new IdentityError('issue-failed', `ttlMs must be > 0, got ${ttl}`);
    const now = Date.now();
    const from = seconds(req.notBefore?.getTime() ?? now - (req.backdateMs ?? DEFAULT_CLOCK_SKEW_MS));
    // Round notAfter up so a short TTL is not cut by the seconds resolution of X.509 times.
    const until = new Date(Math.min(Math.ceil((req.notAfter?.getTime() ?? now + ttl) / 1000) * 1000, this.notAfter.getTime()));
    if (until.getTime() <= from.getTime()) throw new IdentityError('issue-failed', `cannot issue ${what}: notAfter ${until.toISOString()} is not after notBefore ${from.toISOString()}`);
    const der = buildCertificate({
      serial: randomSerial(),
      issuer: this.#fields.subject,
      subject,
      notBefore: from,
      notAfter: until,
      publicKey,
      extensions: [
        basicConstraints(false),
        keyUsage([KeyUsage.digitalSignature]),
        ...extensions,
        subjectKeyIdentifier(keyIdentifier(publicKey)),
        authorityKeyIdentifier(this.#keyId),
      ],
    }, this.#key);
    return { cert: this.#selfCheck(new X509Certificate(der)), from, until, now };
  }

  /** The CA as PEM files, Istio's layout: the only way to read the CA key. */
  exportPem(): { certPem: string; keyPem: string; chainPem: string; rootPem: string } {
    return {
      certPem: this.certPem,
      keyPem: this.#key.export({ type: 'pkcs8', format: 'pem' }) as string,
      chainPem: certificatesPem(fingerprintSet([this.certificate, ...this.intermediates, ...this.roots])),
      rootPem: this.rootsPem(),
    };
  }

  /** Public facts only (for /config_dump). */
  describe(): { trustDomain: string; certificate: CertificateSummary; intermediates: CertificateSummary[]; roots: CertificateSummary[] } {
    return {
      trustDomain: this.trustDomain,
      certificate: summarizeCertificate(this.certificate),
      intermediates: this.intermediates.map(summarizeCertificate),
      roots: this.roots.map(summarizeCertificate),
    };
  }

  /** A signed certificate must verify against this CA; a mismatch is a bug, never shipped. */
  #selfCheck(cert: X509Certificate): X509Certificate {
    if (!issuedBy(cert, this.certificate)) {
      throw new IdentityError('issue-failed', `internal error: the certificate just signed does not verify against ${subjectText(this.certificate)}`);
    }
    return cert;
  }
}
