/**
 * The node's certificate store: one workload certificate per identity of a workload on
 * this node (like ztunnel, never for others), issued on demand from the CA, rotated before
 * expiry, served as a `node:tls` SecureContext.
 *
 * Defaults, all overridable in `CertificateStoreOptions`:
 *
 * | what | default |
 * |---|---|
 * | lifetime of a workload certificate | 24 h (`ttlMs`) |
 * | rotation | at 50 % of the lifetime (`rotateAt`), up to 10 % of the lifetime earlier at random (`rotationJitter`) so a node's certificates do not all rotate at once |
 * | retry after a failed rotation | 1 s doubling to 60 s (`retryMinMs`, `retryMaxMs`), while the old certificate still serves |
 * | local identities | any identity in the issuer's trust domain until `setLocalIdentities` (or `localIdentities`) names them |
 *
 * Rotation never drops a connection: the new certificate and context are built first and
 * swapped in one step; connections already open keep the context they were made with (TLS
 * does not look at the certificate again after the handshake), and the previous
 * certificate stays valid until its own notAfter. New handshakes get the new one.
 * Events: `issued` (first certificate of an identity), `rotated`, `rotationFailed`,
 * `removed`. Timers are unref'd; `close()` stops them.
 *
 * `describe()` is for /config_dump: fingerprints, serials, subjects, SANs and expiry only.
 * Private keys live in KeyObjects, and as PEM only in the TLS credentials the store hands
 * out (`secureContext`, `tlsMaterial`); `describe()` never reaches them.
 */
import { EventEmitter } from 'node:events';
import { createSecureContext, type SecureContext } from 'node:tls';
import { TrustBundle, type TrustBundleEntrySummary } from './bundle.js';
import { DEFAULT_WORKLOAD_TTL_MS, summarizeCertificate, type CertificateIssuer, type CertificateSummary, type WorkloadCertificate } from './ca.js';
import { IdentityError } from './errors.js';
import { parseSpiffeId } from './spiffe.js';
import { MESH_TLS_VERSION } from './tls.js';

export const DEFAULT_ROTATE_AT = 0.5;
export const DEFAULT_ROTATION_JITTER = 0.1;
export const DEFAULT_RETRY_MIN_MS = 1_000;
export const DEFAULT_RETRY_MAX_MS = 60_000;
/** Never rotate sooner than this after the last issuance (guards against hot loops). */
export const MIN_ROTATION_DELAY_MS = 100;
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface CertificateStoreOptions {
  readonly issuer: CertificateIssuer;
  /** Default: a bundle with the issuer's roots for its trust domain. */
  readonly trustBundle?: TrustBundle;
  readonly ttlMs?: number;
  /** Fraction of the lifetime at which to rotate, 0 < rotateAt < 1. */
  readonly rotateAt?: number;
  /** Up to this fraction of the lifetime earlier than `rotateAt`, at random. */
  readonly rotationJitter?: number;
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** The identities of workloads on this node; default: any in the issuer's trust domain. */
  readonly localIdentities?: Iterable<string>;
}

export interface RotationEvent {
  readonly identity: string;
  readonly previous: WorkloadCertificate;
  readonly current: WorkloadCertificate;
}

export interface RotationFailedEvent {
  readonly identity: string;
  readonly error: IdentityError;
  readonly retryInMs: number;
}

export interface WorkloadCertificateSummary extends CertificateSummary {
  readonly issuedAt: string;
  /** Intermediates sent after the leaf. */
  readonly chain: readonly CertificateSummary[];
}

export interface CertificateStoreDump {
  readonly trustDomain: string;
  readonly trustBundle: readonly TrustBundleEntrySummary[];
  /** `'any'` until the local identities are set. */
  readonly localIdentities: readonly string[] | 'any';
  readonly certificates: readonly {
    readonly identity: string;
    readonly rotatesAt: string;
    readonly current: WorkloadCertificateSummary;
    /** The certificate before the last rotation, while it is still valid. */
    readonly previous?: WorkloadCertificateSummary;
  }[];
}

/**
 * An identity's credentials as PEM, for code that builds its own TLS contexts (e.g. an
 * HBONE server caching contexts per material). Holds the private key: never log it.
 */
export interface TlsMaterial {
  readonly key: string;
  /** Leaf + intermediates. */
  readonly cert: string;
  /** The trust bundle (every root). */
  readonly ca: string;
}

interface Credentials {
  readonly material: TlsMaterial;
  readonly context: SecureContext;
}

interface Entry {
  readonly identity: string;
  current: WorkloadCertificate;
  previous?: WorkloadCertificate;
  creds: Credentials;
  rotatesAt: number;
  timer?: NodeJS.Timeout;
  rotating?: Promise<WorkloadCertificate>;
  failures: number;
}

function summarizeWorkload(c: WorkloadCertificate): WorkloadCertificateSummary {
  return { ...summarizeCertificate(c.certificate), issuedAt: c.issuedAt.toISOString(), chain: c.intermediates.map(summarizeCertificate) };
}

export interface CertificateStore {
  on(event: 'issued', listener: (cert: WorkloadCertificate) => void): this;
  on(event: 'rotated', listener: (e: RotationEvent) => void): this;
  on(event: 'rotationFailed', listener: (e: RotationFailedEvent) => void): this;
  on(event: 'removed', listener: (identity: string) => void): this;
  once(event: 'issued', listener: (cert: WorkloadCertificate) => void): this;
  once(event: 'rotated', listener: (e: RotationEvent) => void): this;
  once(event: 'rotationFailed', listener: (e: RotationFailedEvent) => void): this;
  once(event: 'removed', listener: (identity: string) => void): this;
}

export class CertificateStore extends EventEmitter {
  readonly trustDomain: string;
  readonly trustBundle: TrustBundle;
  readonly #issuer: CertificateIssuer;
  readonly #ttlMs: number;
  readonly #rotateAt: number;
  readonly #jitter: number;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Promise<Entry>>();
  #local: Set<string> | undefined;
  #closed = false;
  readonly #onBundleChange = (): void => {
    for (const e of this.#entries.values()) e.creds = this.#credentials(e.current);
  };

  constructor(opts: CertificateStoreOptions) {
    super();
    this.#issuer = opts.issuer;
    this.trustDomain = opts.issuer.trustDomain;
    this.trustBundle = opts.trustBundle ?? TrustBundle.of(opts.issuer.trustDomain, opts.issuer.trustAnchors());
    this.#ttlMs = opts.ttlMs ?? DEFAULT_WORKLOAD_TTL_MS;
    this.#rotateAt = opts.rotateAt ?? DEFAULT_ROTATE_AT;
    this.#jitter = opts.rotationJitter ?? DEFAULT_ROTATION_JITTER;
    this.#retryMinMs = opts.retryMinMs ?? DEFAULT_RETRY_MIN_MS;
    this.#retryMaxMs = opts.retryMaxMs ?? DEFAULT_RETRY_MAX_MS;
    if (!(this.#ttlMs > 0)) throw new IdentityError('issue-failed', `ttlMs must be > 0, got ${this.#ttlMs}`);
    if (!(this.#rotateAt > 0 && this.#rotateAt < 1)) throw new IdentityError('issue-failed', `rotateAt must be between 0 and 1, got ${this.#rotateAt}`);
    if (!(this.#jitter >= 0 && this.#jitter < this.#rotateAt)) throw new IdentityError('issue-failed', `rotationJitter must be >= 0 and below rotateAt, got ${this.#jitter}`);
    if (opts.localIdentities) this.#local = new Set(opts.localIdentities);
    this.trustBundle.on('change', this.#onBundleChange);
  }

  /** Names the workloads on this node; certificates of identities no longer local are dropped. */
  setLocalIdentities(identities: Iterable<string>): void {
    this.#local = new Set(identities);
    for (const id of [...this.#pending.keys()]) if (!this.#local.has(id)) this.#pending.delete(id);
    for (const id of [...this.#entries.keys()]) if (!this.#local.has(id)) this.remove(id);
  }

  /** Whether the store may hold a certificate for `identity` (false for an invalid SPIFFE ID). */
  isLocal(identity: string): boolean {
    try {
      this.#checkLocal(identity);
      return true;
    } catch {
      return false;
    }
  }

  has(identity: string): boolean {
    return this.#entries.has(identity);
  }

  identities(): string[] {
    return [...this.#entries.keys()];
  }

  /** The current certificate of an identity, if held. */
  certificate(identity: string): WorkloadCertificate | undefined {
    return this.#entries.get(identity)?.current;
  }

  /** The current certificate of an identity, issued on demand. Concurrent calls share one issuance. */
  async acquire(identity: string): Promise<WorkloadCertificate> {
    return (await this.#entry(identity)).current;
  }

  /** The TLS context for an identity (key, leaf + intermediates, trust bundle; TLS 1.3 only), issued on demand. */
  async secureContext(identity: string): Promise<SecureContext> {
    return (await this.#entry(identity)).creds.context;
  }

  /** The current TLS context of an identity already held, without issuing. */
  currentSecureContext(identity: string): SecureContext | undefined {
    return this.#entries.get(identity)?.creds.context;
  }

  /** The same credentials as PEM (key, leaf + intermediates, trust bundle), issued on demand. Holds the key: never log it. */
  async tlsMaterial(identity: string): Promise<TlsMaterial> {
    return (await this.#entry(identity)).creds.material;
  }

  /** The current PEM credentials of an identity already held, without issuing. */
  currentTlsMaterial(identity: string): TlsMaterial | undefined {
    return this.#entries.get(identity)?.creds.material;
  }

  /** Rotates an identity's certificate now. */
  async rotate(identity: string): Promise<WorkloadCertificate> {
    const entry = await this.#entry(identity);
    return this.#rotate(entry);
  }

  /** Drops an identity's certificate (its workload left the node). Open connections are untouched. */
  remove(identity: string): boolean {
    const entry = this.#entries.get(identity);
    this.#pending.delete(identity);
    if (!entry) return false;
    clearTimeout(entry.timer);
    this.#entries.delete(identity);
    this.emit('removed', identity);
    return true;
  }

  /** PEM of every root of the trust bundle. */
  trustBundlePem(): string {
    return this.trustBundle.pem();
  }

  /** For /config_dump: public facts only, never key material. */
  describe(): CertificateStoreDump {
    const now = Date.now();
    return {
      trustDomain: this.trustDomain,
      trustBundle: this.trustBundle.describe(),
      localIdentities: this.#local ? [...this.#local].sort() : 'any',
      certificates: [...this.#entries.values()].map((e) => ({
        identity: e.identity,
        rotatesAt: new Date(e.rotatesAt).toISOString(),
        current: summarizeWorkload(e.current),
        ...(e.previous && e.previous.notAfter.getTime() > now ? { previous: summarizeWorkload(e.previous) } : {}),
      })),
    };
  }

  /** Stops every rotation timer and drops the certificates; later calls throw `closed`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const e of this.#entries.values()) clearTimeout(e.timer);
    this.#entries.clear();
    this.#pending.clear();
    this.trustBundle.off('change', this.#onBundleChange);
  }

  #entry(identity: string): Promise<Entry> {
    if (this.#closed) return Promise.reject(new IdentityError('closed', 'the certificate store is closed'));
    const have = this.#entries.get(identity);
    if (have) return Promise.resolve(have);
    const pending = this.#pending.get(identity);
    if (pending) return pending;
    let id: string;
    try {
      id = parseSpiffeId(identity).uri;
      this.#checkLocal(id);
    } catch (e) {
      return Promise.reject(e);
    }
    const p = this.#issue(id).then((cert) => {
      if (this.#closed) throw new IdentityError('closed', 'the certificate store was closed while issuing');
      if (this.#pending.get(id) !== p) throw new IdentityError('not-local', `${id} was removed from this node while its certificate was issued`);
      this.#pending.delete(id);
      const entry: Entry = { identity: id, current: cert, creds: this.#credentials(cert), rotatesAt: 0, failures: 0 };
      this.#entries.set(id, entry);
      this.#schedule(entry);
      this.emit('issued', cert);
      return entry;
    }, (e: unknown) => {
      if (this.#pending.get(id) === p) this.#pending.delete(id);
      throw e;
    });
    this.#pending.set(id, p);
    return p;
  }

  #checkLocal(identity: string): void {
    if (parseSpiffeId(identity).trustDomain !== this.trustDomain) {
      throw new IdentityError('not-local', `${identity} is not in this node's trust domain ${this.trustDomain}`);
    }
    if (this.#local && !this.#local.has(identity)) {
      throw new IdentityError('not-local', `${identity} is not a workload on this node: the node proxy holds certificates only for its local workloads`);
    }
  }

  async #issue(identity: string): Promise<WorkloadCertificate> {
    try {
      return await this.#issuer.issueWorkloadCertificate({ identity, ttlMs: this.#ttlMs });
    } catch (e) {
      if (e instanceof IdentityError) throw e;
      throw new IdentityError('issue-failed', `issuing a certificate for ${identity} failed: ${(e as Error).message}`, { cause: e });
    }
  }

  #credentials(cert: WorkloadCertificate): Credentials {
    const material: TlsMaterial = {
      key: cert.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      cert: cert.certChainPem,
      ca: this.trustBundle.pem(),
    };
    const context = createSecureContext({ ...material, minVersion: MESH_TLS_VERSION, maxVersion: MESH_TLS_VERSION });
    return { material, context };
  }

  #schedule(entry: Entry): void {
    const cert = entry.current;
    const start = cert.issuedAt.getTime();
    const lifetime = cert.notAfter.getTime() - start;
    const fraction = this.#rotateAt - Math.random() * this.#jitter;
    entry.rotatesAt = Math.max(start + lifetime * fraction, Date.now() + MIN_ROTATION_DELAY_MS);
    this.#arm(entry, entry.rotatesAt - Date.now());
  }

  #arm(entry: Entry, delayMs: number): void {
    clearTimeout(entry.timer);
    const delay = Math.max(0, delayMs);
    entry.timer = setTimeout(() => {
      if (this.#entries.get(entry.identity) !== entry) return;
      // A delay beyond setTimeout's range is waited out in steps.
      if (delay > MAX_TIMER_MS) this.#arm(entry, entry.rotatesAt - Date.now());
      else this.#rotate(entry).catch(() => { /* reported as rotationFailed; retried */ });
    }, Math.min(delay, MAX_TIMER_MS));
    entry.timer.unref();
  }

  #rotate(entry: Entry): Promise<WorkloadCertificate> {
    if (entry.rotating) return entry.rotating;
    const run = async (): Promise<WorkloadCertificate> => {
      let next: WorkloadCertificate;
      let creds: Credentials;
      try {
        next = await this.#issue(entry.identity);
        creds = this.#credentials(next);
      } catch (e) {
        const error = e instanceof IdentityError ? e : new IdentityError('issue-failed', (e as Error).message, { cause: e });
        if (this.#entries.get(entry.identity) === entry && !this.#closed) {
          entry.failures++;
          const retryInMs = Math.min(this.#retryMaxMs, this.#retryMinMs * 2 ** (entry.failures - 1));
          this.#arm(entry, retryInMs);
          this.emit('rotationFailed', { identity: entry.identity, error, retryInMs });
        }
        throw error;
      }
      if (this.#closed) throw new IdentityError('closed', 'the certificate store was closed while rotating');
      if (this.#entries.get(entry.identity) !== entry) throw new IdentityError('not-local', `${entry.identity} was removed from this node while rotating`);
      const previous = entry.current;
      // Swap in one step: from here new handshakes use the new certificate.
      entry.previous = previous;
      entry.current = next;
      entry.creds = creds;
      entry.failures = 0;
      this.#schedule(entry);
      this.emit('rotated', { identity: entry.identity, previous, current: next });
      return next;
    };
    entry.rotating = run().finally(() => {
      entry.rotating = undefined;
    });
    return entry.rotating;
  }
}
