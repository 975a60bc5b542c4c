import type { Readable } from 'node:stream';
import type { Headers } from '../deps.js';
import type { Dialer } from './dialer.js';

export interface UpstreamRequest {
  method: string;
  path: string;
  authority: string;
  scheme: string;
  headers: Headers;
  /** Null: no body. A Buffer can be sent again on retry; a stream cannot. */
  body: Buffer | Readable | null;
  /** Per-try timeout: time until response headers, then between body chunks. 0: none. */
  timeoutMs: number;
  connectTimeoutMs: number;
  signal?: AbortSignal;
  /** Connections are made by this instead of a TCP connect (an HBONE tunnel). */
  dial?: Dialer;
}

export interface UpstreamResponse {
  status: number;
  headers: Headers;
  body: Readable;
  /** Resolves when the body ended: the trailers, if any. */
  trailers: Promise<Headers>;
}

/** Why an upstream attempt failed before a response, as Envoy's response flags would say. */
export type UpstreamErrorKind = 'connect-failure' | 'connect-timeout' | 'reset' | 'timeout' | 'protocol-error' | 'no-healthy-upstream';

export class UpstreamError extends Error {
  constructor(readonly kind: UpstreamErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamError';
  }
}

/** An HTTP client for one protocol, pooling connections per endpoint. */
export interface UpstreamClient {
  send(address: string, port: number, req: UpstreamRequest): Promise<UpstreamResponse>;
  close(): Promise<void>;
}
