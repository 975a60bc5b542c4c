/**
 * Errors of the identity layer (SPIFFE IDs, the mesh CA, the certificate store, peer
 * verification). Every one carries the stable code `AMBIT_ERR_IDENTITY` and a `reason`
 * that says which check failed, so a caller (the HBONE listener, an access log, a test)
 * can branch on it without parsing the message. Messages say what happened and what to do.
 */

/** The stable, searchable code of every identity error. */
export const IDENTITY_ERROR_CODE = 'AMBIT_ERR_IDENTITY' as const;

export type IdentityErrorReason =
  /** A string is not a valid SPIFFE ID or trust domain name. */
  | 'invalid-spiffe-id'
  /** A certificate carries no URI SAN at all (so no SPIFFE ID). */
  | 'no-spiffe-id'
  /** A certificate carries more than one URI SAN: an X.509-SVID must carry exactly one. */
  | 'multiple-uri-sans'
  /** The peer presented no certificate. */
  | 'no-peer-certificate'
  /** The peer's chain does not lead to a root of the trust bundle. */
  | 'unknown-ca'
  /** A certificate of the peer's chain is past its notAfter. */
  | 'expired'
  /** A certificate of the peer's chain is before its notBefore. */
  | 'not-yet-valid'
  /** The peer's trust domain is not in the allowed list. */
  | 'trust-domain-not-allowed'
  /** The peer's SPIFFE ID is valid but not the one expected. */
  | 'identity-mismatch'
  /** The chain is malformed: a CA flag is missing, a leaf is a CA, the TLS stack refused it. */
  | 'invalid-chain'
  /** The TLS handshake itself failed (e.g. a client that offers only TLS 1.2), or did not finish in time. */
  | 'handshake-failed'
  /** A CA certificate or key could not be loaded or does not fit together. */
  | 'invalid-ca'
  /** The store was asked for an identity that is not a workload on this node. */
  | 'not-local'
  /** Issuing a certificate failed. */
  | 'issue-failed'
  /** The certificate store is closed. */
  | 'closed'
  /** A CA folder or file another user could read (a key) or change: the message names it and the fix. */
  | 'unsafe-file';

export class IdentityError extends Error {
  readonly code = IDENTITY_ERROR_CODE;
  readonly reason: IdentityErrorReason;
  constructor(reason: IdentityErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IdentityError';
    this.reason = reason;
  }
}

export function isIdentityError(e: unknown, reason?: IdentityErrorReason): e is IdentityError {
  return e instanceof IdentityError && (reason === undefined || e.reason === reason);
}
