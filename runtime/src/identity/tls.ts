/**
 * Mutual TLS on top of the store and the verifier: the options every mesh TLS socket uses,
 * and two primitives for the HBONE tunnel, `acceptMtls` (inbound, on an accepted socket)
 * and `connectMtls` (outbound). Both resolve only once the peer is verified.
 *
 * TLS 1.3 only, on the context and on the socket. Server sockets use
 * `requestCert: true, rejectUnauthorized: false` on purpose: Node completes the handshake
 * either way and with `true` only destroys the socket without saying why; here
 * `verifyTlsPeer` runs at `secure`, refuses everything OpenSSL refused plus what it does
 * not check (SPIFFE ID, trust domains), and the reason is known. Client sockets keep
 * `rejectUnauthorized: true` and check the server's SPIFFE ID in `checkServerIdentity`.
 */
import type { Duplex } from 'node:stream';
import { connect, TLSSocket, type ConnectionOptions, type SecureContext, type TLSSocketOptions } from 'node:tls';
import { IdentityError } from './errors.js';
import { identityErrorFromTls, spiffeServerIdentityCheck, verifyTlsPeer, type PeerVerifyOptions, type VerifiedPeer } from './verify.js';

export const MESH_TLS_VERSION = 'TLSv1.3' as const;
/** A handshake (and its verification) must finish within this. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Options of an inbound (server-side) mesh TLS socket. */
export function mtlsServerOptions(secureContext: SecureContext, extra: { ALPNProtocols?: string[] } = {}): TLSSocketOptions & { minVersion: typeof MESH_TLS_VERSION; maxVersion: typeof MESH_TLS_VERSION } {
  return {
    isServer: true,
    secureContext,
    minVersion: MESH_TLS_VERSION,
    maxVersion: MESH_TLS_VERSION,
    requestCert: true,
    rejectUnauthorized: false,
    ...(extra.ALPNProtocols ? { ALPNProtocols: extra.ALPNProtocols } : {}),
  };
}

/** Options of an outbound (client-side) mesh TLS connection. */
export function mtlsClientOptions(secureContext: SecureContext, verify: PeerVerifyOptions, extra: { ALPNProtocols?: string[] } = {}): ConnectionOptions {
  return {
    secureContext,
    minVersion: MESH_TLS_VERSION,
    maxVersion: MESH_TLS_VERSION,
    rejectUnauthorized: true,
    checkServerIdentity: spiffeServerIdentityCheck(verify),
    ...(extra.ALPNProtocols ? { ALPNProtocols: extra.ALPNProtocols } : {}),
  };
}

export interface MtlsConnection {
  readonly socket: TLSSocket;
  readonly peer: VerifiedPeer;
  readonly protocol: string;
  readonly cipher: string;
  readonly alpnProtocol: string | false;
}

function settle(socket: TLSSocket, event: 'secure' | 'secureConnect', verify: PeerVerifyOptions, timeoutMs: number, raw?: Duplex): Promise<MtlsConnection> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: IdentityError | undefined, conn?: MtlsConnection): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('close', onClose);
      raw?.off('error', onError);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve(conn!);
    };
    const onError = (e: unknown): void => finish(identityErrorFromTls(e));
    const onClose = (): void => finish(new IdentityError('handshake-failed', 'the peer closed the connection during the TLS handshake'));
    const timer = setTimeout(() => finish(new IdentityError('handshake-failed', `the TLS handshake did not finish within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    socket.once(event, () => {
      try {
        const peer = verifyTlsPeer(socket, verify);
        finish(undefined, {
          socket,
          peer,
          protocol: socket.getProtocol() ?? '',
          cipher: socket.getCipher()?.name ?? '',
          alpnProtocol: socket.alpnProtocol ?? false,
        });
      } catch (e) {
        finish(identityErrorFromTls(e));
      }
    });
    socket.on('error', onError);
    socket.on('close', onClose);
    // During the handshake an error of the accepted socket (a reset) is ours to report.
    raw?.on('error', onError);
  });
}

export interface AcceptMtlsOptions {
  readonly secureContext: SecureContext;
  readonly verify: PeerVerifyOptions;
  readonly ALPNProtocols?: string[];
  readonly handshakeTimeoutMs?: number;
}

/**
 * Runs the server side of mutual TLS on an accepted socket and verifies the client.
 * Rejects with an IdentityError (and destroys the socket) when the handshake or the
 * verification fails. Choose `secureContext` per connection, e.g. by the local address.
 */
export function acceptMtls(raw: Duplex, opts: AcceptMtlsOptions): Promise<MtlsConnection> {
  const socket = new TLSSocket(raw, mtlsServerOptions(opts.secureContext, opts.ALPNProtocols ? { ALPNProtocols: opts.ALPNProtocols } : {}));
  return settle(socket, 'secure', opts.verify, opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS, raw);
}

export interface ConnectMtlsOptions {
  readonly host: string;
  readonly port: number;
  readonly secureContext: SecureContext;
  /** Set `expectedIdentities` to pin the server's SPIFFE ID. */
  readonly verify: PeerVerifyOptions;
  readonly ALPNProtocols?: string[];
  readonly servername?: string;
  readonly handshakeTimeoutMs?: number;
}

/** Connects with mutual TLS and verifies the server. Rejects with an IdentityError. */
export function connectMtls(opts: ConnectMtlsOptions): Promise<MtlsConnection> {
  const socket = connect({
    host: opts.host,
    port: opts.port,
    ...(opts.servername ? { servername: opts.servername } : {}),
    ...mtlsClientOptions(opts.secureContext, opts.verify, opts.ALPNProtocols ? { ALPNProtocols: opts.ALPNProtocols } : {}),
  });
  return settle(socket, 'secureConnect', opts.verify, opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
}
