/**
 * The trust bundle: the root certificates trusted per trust domain (a SPIFFE bundle set).
 * The local trust domain's roots come from the mesh CA; federated trust domains can be
 * added. A peer's chain must lead to a root of the peer's own trust domain (so a foreign
 * trust domain's CA cannot vouch for a local identity). Emits `change` when roots change,
 * so TLS contexts can be rebuilt.
 */
import { EventEmitter } from 'node:events';
import type { X509Certificate } from 'node:crypto';
import { summarizeCertificate, type CertificateSummary } from './ca.js';
import { IdentityError } from './errors.js';
import { validateTrustDomain } from './spiffe.js';
import { certificatesPem, isSelfSigned, parseCertificates, subjectText } from './x509.js';

export interface TrustBundleEntrySummary extends CertificateSummary {
  readonly trustDomain: string;
}

export class TrustBundle extends EventEmitter {
  readonly #roots = new Map<string, X509Certificate[]>();

  /** A bundle holding `roots` (PEM or certificates) for one trust domain. */
  static of(trustDomain: string, roots: string | readonly X509Certificate[]): TrustBundle {
    return new TrustBundle().set(trustDomain, roots);
  }

  /** Replaces the roots of a trust domain. Each must be a self-signed CA certificate. */
  set(trustDomain: string, roots: string | readonly X509Certificate[]): this {
    validateTrustDomain(trustDomain);
    const certs = typeof roots === 'string' ? parseCertificates(roots, `trust bundle of ${trustDomain}`) : [...roots];
    if (certs.length === 0) throw new IdentityError('invalid-ca', `the trust bundle of ${trustDomain} holds no certificate`);
    for (const c of certs) {
      if (!c.ca) throw new IdentityError('invalid-ca', `trust bundle of ${trustDomain}: ${subjectText(c)} is not a CA certificate`);
      if (!isSelfSigned(c)) throw new IdentityError('invalid-ca', `trust bundle of ${trustDomain}: ${subjectText(c)} is not a self-signed root`);
    }
    const seen = new Set<string>();
    this.#roots.set(trustDomain, certs.filter((c) => (seen.has(c.fingerprint256) ? false : (seen.add(c.fingerprint256), true))));
    this.emit('change', trustDomain);
    return this;
  }

  /** Adds roots to a trust domain (e.g. a new root during CA rotation), keeping the old ones. */
  add(trustDomain: string, roots: string | readonly X509Certificate[]): this {
    const extra = typeof roots === 'string' ? parseCertificates(roots, `trust bundle of ${trustDomain}`) : [...roots];
    return this.set(trustDomain, [...(this.#roots.get(trustDomain) ?? []), ...extra]);
  }

  delete(trustDomain: string): boolean {
    const had = this.#roots.delete(trustDomain);
    if (had) this.emit('change', trustDomain);
    return had;
  }

  has(trustDomain: string): boolean {
    return this.#roots.has(trustDomain);
  }

  trustDomains(): string[] {
    return [...this.#roots.keys()];
  }

  /** The roots of one trust domain, or of all when none is named. */
  roots(trustDomain?: string): X509Certificate[] {
    if (trustDomain !== undefined) return [...(this.#roots.get(trustDomain) ?? [])];
    return [...this.#roots.values()].flat();
  }

  /** PEM of the roots (one trust domain, or all): the `ca` of a TLS context. */
  pem(trustDomain?: string): string {
    return certificatesPem(this.roots(trustDomain));
  }

  describe(): TrustBundleEntrySummary[] {
    return [...this.#roots].flatMap(([trustDomain, certs]) => certs.map((c) => ({ trustDomain, ...summarizeCertificate(c) })));
  }
}
