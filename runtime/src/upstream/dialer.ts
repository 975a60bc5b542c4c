/**
 * How an upstream connection is made when it is not a plain TCP connect to the
 * endpoint: an HBONE tunnel to the endpoint's node, say. Pools key their connections by
 * `key` as well as by endpoint, so connections made with one source identity are never
 * reused for another.
 */
import type { Duplex } from 'node:stream';

export interface Dialer {
  /** What distinguishes these connections from others to the same endpoint (e.g. `hbone|<source identity>|<node>`). */
  readonly key: string;
  /** Opens a byte stream to the endpoint; rejects with a message saying why it could not. */
  open(timeoutMs: number): Promise<Duplex>;
}

/** Thrown by a dialer; `kind` says how the HTTP pipeline reports it (`x-ambit-upstream-error`). */
export class DialError extends Error {
  constructor(readonly kind: 'connect-failure' | 'connect-timeout', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DialError';
  }
}
