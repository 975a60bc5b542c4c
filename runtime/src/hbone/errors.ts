/** The one error type the HBONE client and helpers reject with. */

export type HboneErrorCode =
  /** No TCP/TLS/HTTP/2 session (or no upstream connection) within the connect timeout. */
  | 'connect-timeout'
  /** The TCP connection failed (refused, unreachable, reset before the handshake). */
  | 'connect-failure'
  /** The TLS handshake failed, or the peer closed the connection before accepting the session. */
  | 'tls'
  /** The server's certificate carries no usable SPIFFE ID, or not the one the caller expected. */
  | 'server-identity'
  /** The server answered the CONNECT with a non-200 status (`status`, `reason`). */
  | 'refused'
  /** The stream or session was reset or closed before the CONNECT was answered. */
  | 'reset'
  /** The client was closed. */
  | 'closed'
  /** The credentials provider failed for the source identity, or its material is unusable. */
  | 'credentials'
  /** A bad address, port or identity was passed in. */
  | 'invalid-argument';

export class HboneError extends Error {
  override readonly name = 'HboneError';
  readonly code: HboneErrorCode;
  /** The HTTP status of a refused CONNECT. */
  readonly status?: number;
  /** The server's reason for a refused CONNECT (the `ambit-reason` response header). */
  readonly reason?: string;

  constructor(code: HboneErrorCode, message: string, options: { status?: number; reason?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options.status !== undefined) this.status = options.status;
    if (options.reason !== undefined) this.reason = options.reason;
  }
}
