/**
 * X.509 v3 certificates built from ASN.1 with node-forge and signed with `node:crypto`.
 *
 * Why both: node-forge builds and parses ASN.1/DER well, but its `pki` layer only knows RSA
 * (and cannot even read a certificate whose key is ECDSA: "OID is not RSA"); ECDSA is an
 * open request (digitalbazaar/forge#532, PR #925 unmerged). So the TBSCertificate is built
 * here with `forge.asn1`, signed with `crypto.sign` (ECDSA P-256/P-384 → DER ECDSA-Sig-Value,
 * RSA → PKCS#1 v1.5, Ed25519), and wrapped into the Certificate SEQUENCE. The result is an
 * ordinary DER certificate that `new crypto.X509Certificate` and `node:tls` accept.
 * Reading certificates uses `crypto.X509Certificate`, plus forge's DER parser for the few
 * fields Node does not expose (the raw subject Name, the key identifiers, pathLen).
 */
import { createHash, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { IdentityError } from './errors.js';

const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;
const U = asn1.Class.UNIVERSAL;
const CTX = asn1.Class.CONTEXT_SPECIFIC;
const T = asn1.Type;

export const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  ed25519: '1.3.101.112',
} as const;

/** KeyUsage bits (RFC 5280 §4.2.1.3). */
export const KeyUsage = {
  digitalSignature: 0,
  keyEncipherment: 2,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

export const bin = (b: Buffer): string => b.toString('binary');
export const buf = (s: string): Buffer => Buffer.from(s, 'binary');
export const der = (a: Asn1): Buffer => buf(asn1.toDer(a).getBytes());
export const fromDer = (b: Buffer): Asn1 =>
  // decodeBitStrings: false keeps BIT STRING contents as bytes, so re-encoding is exact.
  (asn1.fromDer as unknown as (bytes: string, options: object) => Asn1)(bin(b), { strict: true, parseAllBytes: true, decodeBitStrings: false });

export const oid = (o: string): Asn1 => asn1.create(U, T.OID, false, asn1.oidToDer(o).getBytes());
export const seq = (items: Asn1[]): Asn1 => asn1.create(U, T.SEQUENCE, true, items);
export const octets = (b: Buffer): Asn1 => asn1.create(U, T.OCTETSTRING, false, bin(b));
const bool = (v: boolean): Asn1 => asn1.create(U, T.BOOLEAN, false, v ? '\xff' : '\x00');
const int = (n: number): Asn1 => asn1.create(U, T.INTEGER, false, asn1.integerToDer(n).getBytes());
const utf8 = (s: string): Asn1 => asn1.create(U, T.UTF8, false, forge.util.encodeUtf8(s));

/** A DER INTEGER's content bytes for a non-negative big-endian magnitude: minimal, positive. */
function positiveIntegerBytes(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  return (m[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), m]) : Buffer.from(m);
}

/** A random positive serial number of `bits` bits (default 128; RFC 5280 allows up to 20 octets). */
export function randomSerial(bits = 128): Buffer {
  return positiveIntegerBytes(randomBytes(Math.ceil(bits / 8)));
}

/** Hex form of serial content bytes, as `X509Certificate.serialNumber` prints it (upper case). */
export function serialHex(serial: Buffer): string {
  return serial.toString('hex').toUpperCase();
}

/** A Name of the given attributes (CN, O), UTF8String values; both optional. */
export function distinguishedName(attrs: { commonName?: string; organization?: string }): Asn1 {
  const rdns: Asn1[] = [];
  if (attrs.organization) rdns.push(asn1.create(U, T.SET, true, [seq([oid(OID.organization), utf8(attrs.organization)])]));
  if (attrs.commonName) rdns.push(asn1.create(U, T.SET, true, [seq([oid(OID.commonName), utf8(attrs.commonName)])]));
  return seq(rdns);
}

/** The empty Name, for workload certificates that identify by URI SAN only. */
export function emptyName(): Asn1 {
  return seq([]);
}

function time(d: Date): Asn1 {
  // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
  return d.getUTCFullYear() < 2050
    ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(d))
    : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));
}

/** An extension: its OID, criticality, and the DER of its value. */
export interface Extension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Asn1;
}

export function basicConstraints(ca: boolean, pathLen?: number): Extension {
  const items: Asn1[] = [];
  if (ca) {
    items.push(bool(true));
    if (pathLen !== undefined) items.push(int(pathLen));
  }
  return { oid: OID.basicConstraints, critical: true, value: seq(items) };
}

export function keyUsage(bits: readonly number[]): Extension {
  // A named BIT STRING in DER: trailing zero bits dropped, the first octet counts unused bits.
  const highest = Math.max(...bits);
  const nbytes = Math.floor(highest / 8) + 1;
  const bytes = Buffer.alloc(nbytes);
  for (const b of bits) bytes[Math.floor(b / 8)]! |= 0x80 >> (b % 8);
  const unused = nbytes * 8 - 1 - highest;
  const value = asn1.create(U, T.BITSTRING, false, String.fromCharCode(unused) + bin(bytes));
  return { oid: OID.keyUsage, critical: true, value };
}

export function extKeyUsage(oids: readonly string[]): Extension {
  return { oid: OID.extKeyUsage, critical: false, value: seq(oids.map(oid)) };
}

/** SAN with DNS names and IP addresses (a server certificate, e.g. the controller's). */
export function subjectAltNameHosts(dnsNames: readonly string[], ipAddresses: readonly Buffer[]): Extension {
  return {
    oid: OID.subjectAltName,
    critical: false,
    value: seq([
      ...dnsNames.map((d) => asn1.create(CTX, 2, false, d)),
      ...ipAddresses.map((ip) => asn1.create(CTX, 7, false, bin(ip))),
    ]),
  };
}

/** SAN with URIs only; critical when the subject is empty (RFC 5280 §4.2.1.6). */
export function subjectAltNameUris(uris: readonly string[], critical: boolean): Extension {
  return { oid: OID.subjectAltName, critical, value: seq(uris.map((u) => asn1.create(CTX, 6, false, u))) };
}

export function subjectKeyIdentifier(keyId: Buffer): Extension {
  return { oid: OID.subjectKeyIdentifier, critical: false, value: octets(keyId) };
}

export function authorityKeyIdentifier(keyId: Buffer): Extension {
  return { oid: OID.authorityKeyIdentifier, critical: false, value: seq([asn1.create(CTX, 0, false, bin(keyId))]) };
}

function spki(publicKey: KeyObject): Asn1 {
  return fromDer(publicKey.export({ type: 'spki', format: 'der' }));
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING (without the unused-bits octet). */
export function keyIdentifier(publicKey: KeyObject): Buffer {
  const info = spki(publicKey).value as Asn1[];
  const bits = info[1]!.value as string;
  return createHash('sha1').update(buf(bits).subarray(1)).digest();
}

interface SignatureAlgorithm {
  readonly identifier: Asn1;
  /** The digest for `crypto.sign`, null for Ed25519. */
  readonly hash: string | null;
}

/** The signature algorithm a CA key signs with: ECDSA with SHA-256/384/512 by curve, RSA with SHA-256, Ed25519. */
export function signatureAlgorithm(key: KeyObject): SignatureAlgorithm {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return { identifier: seq([oid(OID.ecdsaWithSha256)]), hash: 'sha256' };
    if (curve === 'secp384r1') return { identifier: seq([oid(OID.ecdsaWithSha384)]), hash: 'sha384' };
    if (curve === 'secp521r1') return { identifier: seq([oid(OID.ecdsaWithSha512)]), hash: 'sha512' };
    throw new IdentityError('invalid-ca', `unsupported EC curve ${curve ?? '(unknown)'} for a CA key: use P-256, P-384 or P-521`);
  }
  if (type === 'rsa') return { identifier: seq([oid(OID.sha256WithRsa), asn1.create(U, T.NULL, false, '')]), hash: 'sha256' };
  if (type === 'ed25519') return { identifier: seq([oid(OID.ed25519)]), hash: null };
  throw new IdentityError('invalid-ca', `unsupported CA key type ${type ?? '(unknown)'}: use EC (P-256/P-384/P-521), RSA or Ed25519`);
}

/** Everything a certificate says, before signing. */
export interface CertificateSpec {
  /** Content bytes of a positive INTEGER (see `randomSerial`). */
  readonly serial: Buffer;
  /** The issuer's subject Name (for a self-signed certificate, the subject). */
  readonly issuer: Asn1;
  readonly subject: Asn1;
  /** Whole seconds are encoded; milliseconds are dropped. */
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKey: KeyObject;
  readonly extensions: readonly Extension[];
}

/** Builds the TBSCertificate, signs it with `signerKey`, and returns the certificate's DER. */
export function buildCertificate(spec: CertificateSpec, signerKey: KeyObject): Buffer {
  const alg = signatureAlgorithm(signerKey);
  const extensions = spec.extensions.map((e) =>
    seq([oid(e.oid), ...(e.critical ? [bool(true)] : []), octets(der(e.value))]),
  );
  const tbs = seq([
    asn1.create(CTX, 0, true, [int(2)]), // version v3
    asn1.create(U, T.INTEGER, false, bin(spec.serial)),
    alg.identifier,
    spec.issuer,
    seq([time(spec.notBefore), time(spec.notAfter)]),
    spec.subject,
    spki(spec.publicKey),
    asn1.create(CTX, 3, true, [seq(extensions)]),
  ]);
  const tbsDer = der(tbs);
  const signature = sign(alg.hash, tbsDer, signerKey);
  return der(seq([fromDer(tbsDer), alg.identifier, asn1.create(U, T.BITSTRING, false, '\x00' + bin(signature))]));
}

/** Fields of a certificate that `X509Certificate` does not expose. */
export interface CertificateFields {
  /** The subject Name as ASN.1, to be the issuer of certificates this one signs. */
  readonly subject: Asn1;
  readonly subjectKeyIdentifier?: Buffer;
  /** basicConstraints pathLenConstraint, when present. */
  readonly pathLen?: number;
}

export function readCertificateFields(cert: X509Certificate): CertificateFields {
  let root: Asn1;
  try {
    root = fromDer(cert.raw);
  } catch (e) {
    throw new IdentityError('invalid-ca', `cannot parse certificate ${subjectText(cert)}: ${(e as Error).message}`, { cause: e });
  }
  const tbs = (root.value as Asn1[])[0]!.value as Asn1[];
  // version [0] is present in v3 certificates; subject follows serial, signature, issuer, validity.
  const offset = tbs[0]!.tagClass === CTX && tbs[0]!.type === 0 ? 1 : 0;
  const subject = tbs[offset + 4]!;
  let subjectKeyId: Buffer | undefined;
  let pathLen: number | undefined;
  const extsWrapper = tbs.find((a) => a.tagClass === CTX && a.type === 3);
  for (const ext of ((extsWrapper?.value as Asn1[] | undefined)?.[0]?.value as Asn1[] | undefined) ?? []) {
    const parts = ext.value as Asn1[];
    const id = asn1.derToOid(parts[0]!.value as string);
    const valueDer = buf(parts[parts.length - 1]!.value as string);
    if (id === OID.subjectKeyIdentifier) subjectKeyId = buf(fromDer(valueDer).value as string);
    else if (id === OID.basicConstraints) {
      const bc = fromDer(valueDer).value as Asn1[];
      const p = bc.find((a) => a.type === T.INTEGER);
      if (p) pathLen = asn1.derToInteger(p.value as string);
    }
  }
  return { subject, ...(subjectKeyId ? { subjectKeyIdentifier: subjectKeyId } : {}), ...(pathLen !== undefined ? { pathLen } : {}) };
}

/** DER → PEM. */
export function toPem(derBytes: Buffer, label = 'CERTIFICATE'): string {
  const b64 = derBytes.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Every certificate of a PEM bundle, in order. Throws `invalid-ca` on a malformed one. */
export function parseCertificates(pem: string, what = 'PEM'): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw new IdentityError('invalid-ca', `${what}: certificate #${i + 1} cannot be parsed: ${(e as Error).message}`, { cause: e });
    }
  });
}

/** The PEM of certificates, concatenated. */
export function certificatesPem(certs: readonly X509Certificate[]): string {
  return certs.map((c) => c.toString()).join('');
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Parses OpenSSL's `Mar  5 12:00:00 2025 GMT` (X509Certificate.validFrom/validTo). */
export function parseOpenSslTime(s: string): Date {
  const m = /^([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4}) GMT$/.exec(s.trim());
  const month = m ? MONTHS.indexOf(m[1]!) : -1;
  if (!m || month < 0) {
    const d = new Date(s);
    if (Number.isNaN(d.getTime())) throw new IdentityError('invalid-chain', `unreadable certificate time "${s}"`);
    return d;
  }
  return new Date(Date.UTC(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])));
}

export function notBefore(cert: X509Certificate): Date {
  return parseOpenSslTime(cert.validFrom);
}

export function notAfter(cert: X509Certificate): Date {
  return parseOpenSslTime(cert.validTo);
}

/** True when `cert` is self-issued and its signature verifies with its own key. */
export function isSelfSigned(cert: X509Certificate): boolean {
  return cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/** True when `issuer` issued `cert`: names/key identifiers match and the signature verifies. */
export function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

/** A certificate's subject (or issuer) on one line, for messages. */
export function subjectText(cert: X509Certificate, which: 'subject' | 'issuer' = 'subject'): string {
  const name = (cert[which] as string | undefined) ?? '';
  return name.replace(/\n/g, ', ') || '(empty name)';
}
