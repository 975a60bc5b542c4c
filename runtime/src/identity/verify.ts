/**
 * Verifying a peer: its chain leads to a root of its trust domain in the trust bundle,
 * nothing on the path is expired or not yet valid, the leaf carries exactly one URI SAN
 * that is a valid SPIFFE ID, and its trust domain is allowed.
 *
 * Node's TLS (OpenSSL, `ca` = the bundle) checks the chain too; these explicit checks run
 * after the handshake on the peer chain (`getPeerCertificate(true)`), give each failure a
 * coded reason and a clear message, and add what OpenSSL does not know (SPIFFE ID, trust
 * domains, the per-trust-domain anchor). `verifyTlsPeer` also refuses a socket that
 * OpenSSL refused, so the two never disagree in the peer's favour.
 */
import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate, TLSSocket } from 'node:tls';
import type { TrustBundle } from './bundle.js';
import { IdentityError, type IdentityErrorReason } from './errors.js';
import { spiffeIdFromCertificate, type SpiffeId } from './spiffe.js';
import { isSelfSigned, issuedBy, notAfter, notBefore, subjectText } from './x509.js';

/** At most this many certificates from leaf to anchor (leaf, intermediates, root). */
export const DEFAULT_MAX_CHAIN_DEPTH = 5;

export interface PeerVerifyOptions {
  readonly trustBundle: TrustBundle;
  /** Trust domains whose peers are accepted; default: every trust domain of the bundle. */
  readonly allowedTrustDomains?: readonly string[];
  /** When set, the peer's SPIFFE ID must be one of these (e.g. the destination's identity). */
  readonly expectedIdentities?: readonly string[];
  /** Only TLS 1.3 is accepted on a socket (default true; `verifyTlsPeer` only). */
  readonly requireTls13?: boolean;
  /** The time to check validity at; default now. */
  readonly now?: Date;
  readonly maxChainDepth?: number;
}

export interface VerifiedPeer {
  /** The peer's SPIFFE ID. */
  readonly identity: string;
  readonly spiffeId: SpiffeId;
  readonly certificate: X509Certificate;
  /** Leaf → intermediates → the trust anchor. */
  readonly path: readonly X509Certificate[];
  /** The earliest notAfter on the path. */
  readonly notAfter: Date;
}

/** The chain a TLS socket reports (`getPeerCertificate(true)`), leaf first, as X509Certificates. */
export function peerCertificateChain(peer: PeerCertificate | DetailedPeerCertificate | undefined): X509Certificate[] {
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  let cur: PeerCertificate | undefined = peer;
  while (cur && cur.raw && !seen.has(cur.fingerprint256)) {
    seen.add(cur.fingerprint256);
    out.push(new X509Certificate(cur.raw));
    cur = (cur as DetailedPeerCertificate).issuerCertificate;
  }
  return out;
}

function describeCert(c: X509Certificate, leaf: boolean): string {
  return leaf ? 'peer certificate' : `CA certificate "${subjectText(c)}" in the peer's chain`;
}

/** Verifies a peer chain (leaf first; any order of intermediates; a root in it is ignored). Throws IdentityError. */
export function verifyPeerChain(chain: readonly (X509Certificate | Buffer)[], opts: PeerVerifyOptions): VerifiedPeer {
  const certs = chain.map((c) => (c instanceof X509Certificate ? c : new X509Certificate(c)));
  const leaf = certs[0];
  if (!leaf) throw new IdentityError('no-peer-certificate', 'the peer presented no certificate: mutual TLS requires a workload certificate');
  const spiffeId = spiffeIdFromCertificate(leaf);
  const td = spiffeId.trustDomain;
  const allowed = opts.allowedTrustDomains ?? opts.trustBundle.trustDomains();
  if (!allowed.includes(td)) {
    throw new IdentityError('trust-domain-not-allowed', `trust domain ${td} not allowed (peer ${spiffeId.uri}; allowed: ${allowed.join(', ') || 'none'})`);
  }
  if (leaf.ca) throw new IdentityError('invalid-chain', `the peer certificate of ${spiffeId.uri} is a CA certificate; a workload certificate must have CA:false`);

  const roots = opts.trustBundle.roots(td);
  if (roots.length === 0) throw new IdentityError('unknown-ca', `unknown CA: the trust bundle holds no root for trust domain ${td} (peer ${spiffeId.uri})`);
  const intermediates = certs.slice(1).filter((c) => !isSelfSigned(c));
  const maxDepth = opts.maxChainDepth ?? DEFAULT_MAX_CHAIN_DEPTH;
  const path: X509Certificate[] = [leaf];
  for (;;) {
    const cur = path[path.length - 1]!;
    const anchor = roots.find((r) => issuedBy(cur, r));
    if (anchor) {
      path.push(anchor);
      break;
    }
    const parent = intermediates.find((c) => !path.includes(c) && issuedBy(cur, c));
    if (!parent) {
      throw new IdentityError('unknown-ca', `unknown CA: the certificate chain of ${spiffeId.uri} does not lead to a trusted root of trust domain ${td} (no trusted issuer for "${subjectText(cur, 'issuer')}")`);
    }
    if (!parent.ca) throw new IdentityError('invalid-chain', `${describeCert(parent, false)} is not a CA certificate`);
    path.push(parent);
    if (path.length >= maxDepth) throw new IdentityError('invalid-chain', `the certificate chain of ${spiffeId.uri} is deeper than ${maxDepth}`);
  }

  const now = (opts.now ?? new Date()).getTime();
  for (const [i, c] of path.entries()) {
    const from = notBefore(c);
    const until = notAfter(c);
    if (now < from.getTime()) throw new IdentityError('not-yet-valid', `${describeCert(c, i === 0)} is not valid before ${from.toISOString()} (${spiffeId.uri})`);
    if (now >= until.getTime()) throw new IdentityError('expired', `${describeCert(c, i === 0)} expired at ${until.toISOString()} (${spiffeId.uri})`);
  }

  if (opts.expectedIdentities && !opts.expectedIdentities.includes(spiffeId.uri)) {
    throw new IdentityError('identity-mismatch', `peer is ${spiffeId.uri}, expected ${opts.expectedIdentities.join(' or ')}`);
  }
  return {
    identity: spiffeId.uri,
    spiffeId,
    certificate: leaf,
    path,
    notAfter: new Date(Math.min(...path.map((c) => notAfter(c).getTime()))),
  };
}

/** Verifies the peer certificate a TLS socket reports (`getPeerCertificate(true)`). */
export function verifyPeerCertificate(peer: PeerCertificate | DetailedPeerCertificate | undefined, opts: PeerVerifyOptions): VerifiedPeer {
  return verifyPeerChain(peerCertificateChain(peer), opts);
}

/** OpenSSL verification codes (`authorizationError`, client `error.code`) → reasons. */
const OPENSSL_REASONS: Record<string, IdentityErrorReason> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not-yet-valid',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown-ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown-ca',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown-ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown-ca',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown-ca',
  CERT_SIGNATURE_FAILURE: 'unknown-ca',
};

/** An IdentityError for a failure reported by Node's TLS (handshake or OpenSSL verification). */
export function identityErrorFromTls(err: unknown): IdentityError {
  if (err instanceof IdentityError) return err;
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const reason = code ? OPENSSL_REASONS[code] : undefined;
  if (reason) return new IdentityError(reason, `${reason === 'unknown-ca' ? 'unknown CA: ' : ''}the TLS stack refused the peer certificate: ${message} (${code})`, { cause: err });
  return new IdentityError('handshake-failed', `TLS handshake failed: ${message}${code ? ` (${code})` : ''}; only TLS 1.3 with a mesh certificate is accepted`, { cause: err });
}

/**
 * Verifies the peer of an established TLS socket: the explicit checks above, then TLS 1.3,
 * then OpenSSL's own verdict (`authorizationError`). Throws IdentityError; the caller
 * destroys the socket.
 */
export function verifyTlsPeer(socket: TLSSocket, opts: PeerVerifyOptions): VerifiedPeer {
  const peer = socket.getPeerCertificate(true) as DetailedPeerCertificate | undefined;
  if (!peer || !peer.raw) throw new IdentityError('no-peer-certificate', 'the peer presented no certificate: mutual TLS requires a workload certificate');
  const verified = verifyPeerCertificate(peer, opts);
  const protocol = socket.getProtocol();
  if ((opts.requireTls13 ?? true) && protocol !== 'TLSv1.3') {
    throw new IdentityError('handshake-failed', `the connection uses ${protocol ?? 'an unknown protocol'}; only TLS 1.3 is accepted`);
  }
  const osslError = socket.authorizationError as unknown;
  if (osslError) {
    const err = identityErrorFromTls({ code: String(osslError), message: `OpenSSL verification failed for ${verified.identity}` });
    throw new IdentityError(err.reason === 'handshake-failed' ? 'invalid-chain' : err.reason, err.message);
  }
  return verified;
}

/**
 * A `checkServerIdentity` for `tls.connect`: instead of host names, the server's chain
 * and SPIFFE ID are checked (set `expectedIdentities` to pin the destination's identity).
 * Node calls it only after OpenSSL accepted the chain, with `rejectUnauthorized: true`.
 */
export function spiffeServerIdentityCheck(opts: PeerVerifyOptions): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (_hostname, cert) => {
    try {
      verifyPeerCertificate(cert, opts);
      return undefined;
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  };
}
