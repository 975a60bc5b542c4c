/**
 * SPIFFE IDs (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md) and the
 * workload form Ambit uses, `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
 *
 * Rules enforced, as in the spec and go-spiffe:
 * - the scheme is exactly `spiffe://` (lower case);
 * - the trust domain is 1–255 characters of `[a-z0-9._-]`: lower case only, no port,
 *   no userinfo, no percent-encoding;
 * - the path is empty (a trust domain's own ID) or `/seg(/seg)*`, each segment 1+ characters
 *   of `[A-Za-z0-9._-]`, never `.` or `..`, no trailing slash, no query, no fragment;
 * - the whole ID is at most 2048 bytes.
 *
 * Also here: reading the URI SANs of a certificate as Node prints them
 * (`getPeerCertificate().subjectaltname`, `X509Certificate.subjectAltName`). An X.509-SVID
 * carries exactly one URI SAN, and it is the SPIFFE ID.
 */
import type { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { IdentityError } from './errors.js';

export const SPIFFE_SCHEME = 'spiffe://';
export const MAX_SPIFFE_ID_BYTES = 2048;
export const MAX_TRUST_DOMAIN_LENGTH = 255;

const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const SEGMENT_CHARS = /^[A-Za-z0-9._-]+$/;

/** A parsed SPIFFE ID. `uri` is the canonical string form. */
export interface SpiffeId {
  readonly uri: string;
  readonly trustDomain: string;
  /** `''` for a trust domain's own ID, else `/seg/…`. */
  readonly path: string;
  readonly segments: readonly string[];
}

/** A SPIFFE ID of the workload form `/ns/<namespace>/sa/<serviceAccount>`. */
export interface WorkloadSpiffeId extends SpiffeId {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** Why `td` is not a valid trust domain name, or undefined when it is. */
export function trustDomainProblem(td: string): string | undefined {
  if (td.length === 0) return 'the trust domain is empty';
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) return `the trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`;
  if (td.includes('@')) return 'the trust domain must not carry userinfo (user@)';
  if (td.includes(':')) return 'the trust domain must not carry a port';
  if (td.includes('%')) return 'the trust domain must not be percent-encoded';
  if (/[A-Z]/.test(td)) return 'the trust domain must be lower case';
  if (!TRUST_DOMAIN_CHARS.test(td)) return 'the trust domain may only hold lower-case letters, digits, ".", "-" and "_"';
  return undefined;
}

export function isTrustDomain(td: string): boolean {
  return trustDomainProblem(td) === undefined;
}

/** Returns `td` when it is a valid trust domain name, else throws `invalid-spiffe-id`. */
export function validateTrustDomain(td: string): string {
  const problem = trustDomainProblem(td);
  if (problem) throw new IdentityError('invalid-spiffe-id', `invalid trust domain "${td}": ${problem}`);
  return td;
}

function segmentProblem(seg: string): string | undefined {
  if (seg.length === 0) return 'path segments must not be empty (no "//" and no trailing "/")';
  if (seg === '.' || seg === '..') return 'path segments must not be "." or ".."';
  if (seg.includes('%')) return 'path segments must not be percent-encoded';
  if (!SEGMENT_CHARS.test(seg)) return `path segment "${seg}" may only hold letters, digits, ".", "-" and "_"`;
  return undefined;
}

/** Why `uri` is not a valid SPIFFE ID, or undefined when it is. */
export function spiffeIdProblem(uri: string): string | undefined {
  if (Buffer.byteLength(uri) > MAX_SPIFFE_ID_BYTES) return `a SPIFFE ID is at most ${MAX_SPIFFE_ID_BYTES} bytes`;
  if (!uri.startsWith(SPIFFE_SCHEME)) return 'the scheme must be "spiffe://"';
  const rest = uri.slice(SPIFFE_SCHEME.length);
  if (rest.includes('?')) return 'a SPIFFE ID must not carry a query';
  if (rest.includes('#')) return 'a SPIFFE ID must not carry a fragment';
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  const tdProblem = trustDomainProblem(td);
  if (tdProblem) return tdProblem;
  if (slash < 0) return undefined;
  for (const seg of rest.slice(slash + 1).split('/')) {
    const p = segmentProblem(seg);
    if (p) return p;
  }
  return undefined;
}

export function isSpiffeId(uri: string): boolean {
  return spiffeIdProblem(uri) === undefined;
}

/** Parses a SPIFFE ID; throws `invalid-spiffe-id` with the rule it breaks. */
export function parseSpiffeId(uri: string): SpiffeId {
  const problem = spiffeIdProblem(uri);
  if (problem) throw new IdentityError('invalid-spiffe-id', `invalid SPIFFE ID "${uri}": ${problem}`);
  const rest = uri.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  return { uri, trustDomain, path, segments: path === '' ? [] : path.slice(1).split('/') };
}

/** Formats a SPIFFE ID from a trust domain and path segments, validating both. */
export function formatSpiffeId(trustDomain: string, ...segments: string[]): string {
  validateTrustDomain(trustDomain);
  for (const seg of segments) {
    const p = segmentProblem(seg);
    if (p) throw new IdentityError('invalid-spiffe-id', `invalid SPIFFE ID path for trust domain ${trustDomain}: ${p}`);
  }
  const uri = SPIFFE_SCHEME + trustDomain + segments.map((s) => `/${s}`).join('');
  return parseSpiffeId(uri).uri;
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>`, the identity of a Kubernetes service account. */
export function workloadId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return formatSpiffeId(trustDomain, 'ns', namespace, 'sa', serviceAccount);
}

/** Parses a SPIFFE ID that must be of the workload form `/ns/<ns>/sa/<sa>`. */
export function parseWorkloadId(uri: string): WorkloadSpiffeId {
  const id = parseSpiffeId(uri);
  const [ns, namespace, sa, serviceAccount, ...extra] = id.segments;
  if (ns !== 'ns' || sa !== 'sa' || namespace === undefined || serviceAccount === undefined || extra.length > 0) {
    throw new IdentityError('invalid-spiffe-id', `SPIFFE ID "${uri}" is not a workload identity: expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`);
  }
  return { ...id, namespace, serviceAccount };
}

/** One entry of a certificate's subject alternative names, e.g. `{ type: 'URI', value: 'spiffe://…' }`. */
export interface SubjectAltNameEntry {
  readonly type: string;
  readonly value: string;
}

/**
 * Splits Node's subject-alt-name string (`DNS:a, URI:spiffe://x/y, IP Address:10.0.0.1`).
 * Node prints a value that holds a comma, quote or other confusable characters as a JSON
 * string (`URI:"spiffe://x/a, b"`); those are unquoted here, so a crafted SAN cannot
 * smuggle a second entry.
 */
export function parseSubjectAltName(san: string | undefined): SubjectAltNameEntry[] {
  const out: SubjectAltNameEntry[] = [];
  if (!san) return out;
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon < 0) throw new IdentityError('invalid-chain', `malformed subject alternative names: "${san}"`);
    const type = san.slice(i, colon);
    i = colon + 1;
    let value: string;
    if (san[i] === '"') {
      let j = i + 1;
      while (j < san.length && san[j] !== '"') j += san[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(san.slice(i, j + 1)) as string;
      } catch (e) {
        throw new IdentityError('invalid-chain', `malformed subject alternative names: "${san}"`, { cause: e });
      }
      i = j + 1;
    } else {
      const comma = san.indexOf(', ', i);
      const end = comma < 0 ? san.length : comma;
      value = san.slice(i, end);
      i = end;
    }
    out.push({ type, value });
    if (san.startsWith(', ', i)) i += 2;
    else if (i < san.length) throw new IdentityError('invalid-chain', `malformed subject alternative names: "${san}"`);
  }
  return out;
}

/**
 * The SPIFFE ID of an X.509-SVID from its subject-alt-name string: exactly one URI SAN,
 * and it must be a valid SPIFFE ID. Throws `no-spiffe-id`, `multiple-uri-sans` or
 * `invalid-spiffe-id`.
 */
export function spiffeIdFromSubjectAltName(san: string | undefined): SpiffeId {
  const uris = parseSubjectAltName(san).filter((e) => e.type === 'URI');
  if (uris.length === 0) throw new IdentityError('no-spiffe-id', 'no SPIFFE ID: the certificate carries no URI SAN');
  if (uris.length > 1) {
    throw new IdentityError('multiple-uri-sans', `the certificate carries ${uris.length} URI SANs (${uris.map((u) => u.value).join(', ')}); an X.509-SVID carries exactly one`);
  }
  const uri = uris[0]!.value;
  const problem = spiffeIdProblem(uri);
  if (problem) throw new IdentityError(uri.startsWith(SPIFFE_SCHEME) ? 'invalid-spiffe-id' : 'no-spiffe-id', `no valid SPIFFE ID: URI SAN "${uri}": ${problem}`);
  return parseSpiffeId(uri);
}

/** The SPIFFE ID of a certificate as `node:crypto` or `node:tls` gives it. */
export function spiffeIdFromCertificate(cert: X509Certificate | PeerCertificate): SpiffeId {
  const san = 'subjectAltName' in cert ? cert.subjectAltName : (cert as PeerCertificate).subjectaltname;
  return spiffeIdFromSubjectAltName(san);
}
