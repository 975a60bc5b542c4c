/**
 * The HBONE inbound side (default :15008): mutual TLS 1.3 with ALPN `h2`, then an HTTP/2
 * session per connection whose `CONNECT <ip>:<port>` streams are tunnels. The peer is the
 * SPIFFE ID in its client certificate; `onTunnel` decides each tunnel and names its
 * upstream, and the stream is piped to it both ways.
 *
 * Certificates rotate without a restart: `credentials` is asked on every connection (with
 * the local address the peer dialled, so a node can answer as the workload it fronts) and
 * a TLS context is built once per distinct material.
 */
import http2, { type Http2Session, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { formatAuthority, parseAuthority, type SocketAddress } from './authority.js';
import { connectTcp, DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS } from './connect.js';
import { pipeBothWays } from './pipe.js';
import { spiffeIdOfCertificate, type SpiffeId } from './spiffe.js';
import { endpointText, HBONE_ALPN, HBONE_PORT, HBONE_TLS_VERSION, materialDigest, tlsFacts, type TlsFacts, type TlsMaterial } from './tls.js';
import { joinBatchedWrites } from './stream-writes.js';

/** A TLS handshake must finish within this. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** A session without tunnels is closed (GOAWAY) after this. */
export const DEFAULT_SERVER_IDLE_TIMEOUT_MS = 10 * 60_000;
/** SETTINGS_MAX_CONCURRENT_STREAMS the server advertises: tunnels per connection. */
export const DEFAULT_MAX_CONCURRENT_STREAMS = 1000;
/**
 * Per-stream flow-control window (SETTINGS_INITIAL_WINDOW_SIZE), on both sides.
 *
 * Both windows stay well below the kernel's socket buffers (Linux `tcp_wmem` max is
 * 4 MiB by default) on purpose: Node's HTTP/2 stops reading its socket while a write
 * of its own is in flight, so when both peers have more data in flight than the
 * socket buffers hold, each waits for the other and tunnels stall. Measured on
 * loopback with 16–64 streams echoing 2 MB each: 4 MiB session windows were fine,
 * 6–16 MiB deadlocked.
 */
export const DEFAULT_STREAM_WINDOW_BYTES = 256 * 1024;
/** Connection-level flow-control window (see `DEFAULT_STREAM_WINDOW_BYTES`). */
export const DEFAULT_SESSION_WINDOW_BYTES = 1024 * 1024;
/** The response header carrying the reason of a refused tunnel. */
export const REASON_HEADER = 'ambit-reason';
/** How many distinct credential sets keep a built TLS context. */
const MAX_CACHED_CONTEXTS = 64;

/** The connection a credentials provider is asked about. */
export interface ConnectionInfo {
  /** The address the peer dialled (a workload address when capture redirects it here). */
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

/**
 * The certificate the server presents on this connection and the trust bundle client
 * certificates are verified against. Called per connection; return the current material
 * (rotation is picked up by the next connection).
 */
export type ServerCredentialsProvider = (conn: ConnectionInfo) => TlsMaterial | Promise<TlsMaterial>;

/** What `onTunnel` is told about a CONNECT. */
export interface TunnelRequest {
  /** The peer's SPIFFE ID, from its verified client certificate. */
  peerIdentity: string;
  peer: SpiffeId;
  /** The CONNECT authority: the workload address and port to deliver to. */
  authority: SocketAddress;
  /** The remote end of the TLS connection (the source node). */
  source: SocketAddress;
  tls: TlsFacts;
  headers: IncomingHttpHeaders;
  stream: ServerHttp2Stream;
}

export type TunnelDecision =
  /** Refused: answered with `status` (default 403) and `reason` in the `ambit-reason` header. */
  | { allow: false; status?: number; reason: string }
  /** Allowed: `connect` gives the upstream (default: TCP to the authority); a failure answers 503. */
  | { allow: true; connect?: () => Promise<Duplex>; serve?: undefined }
  /**
   * Allowed, and the caller takes the stream: it is answered 200 and handed to `serve`,
   * which owns it from then on (the node proxy feeds it to its inbound pipeline).
   */
  | { allow: true; serve: (stream: ServerHttp2Stream) => void };

export type HboneServerEvent =
  | { type: 'connection-refused'; remote: string; reason: string }
  | { type: 'connection-open'; remote: string; peerIdentity: string; tls: TlsFacts }
  | { type: 'connection-closed'; remote: string; peerIdentity: string; tunnels: number }
  | { type: 'tunnel-refused'; remote: string; peerIdentity: string; authority: string; status: number; reason: string }
  | { type: 'tunnel-served'; remote: string; peerIdentity: string; authority: string }
  | {
    type: 'tunnel-closed'; remote: string; peerIdentity: string; authority: string;
    bytesFromPeer: number; bytesToPeer: number; durationMs: number; error?: string;
  };

export interface HboneServerOptions {
  credentials: ServerCredentialsProvider;
  onTunnel: (request: TunnelRequest) => TunnelDecision | Promise<TunnelDecision>;
  /** Log and telemetry hook. Default: refused connections are written to stderr. */
  onEvent?: (event: HboneServerEvent) => void;
  handshakeTimeoutMs?: number;
  /** Timeout of the default (TCP) upstream connect. */
  upstreamConnectTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxConcurrentStreams?: number;
  /** Flow-control windows; see `DEFAULT_STREAM_WINDOW_BYTES` before raising them. */
  streamWindowBytes?: number;
  sessionWindowBytes?: number;
}

export interface HboneServerStats {
  /** TLS connections that passed the checks and are open now. */
  connections: number;
  connectionsTotal: number;
  connectionsRefused: number;
  tunnels: number;
  tunnelsTotal: number;
  tunnelsRefused: number;
  /** Bytes tunnelled, counted at the tunnel streams. */
  bytesFromPeers: number;
  bytesToPeers: number;
}

interface Connection {
  remote: string;
  source: SocketAddress;
  socket: TLSSocket;
  peer: SpiffeId;
  tls: TlsFacts;
  session?: ServerHttp2Session;
  tunnels: number;
  idleTimer?: NodeJS.Timeout;
}

/** A TCP connection's 4-tuple: the same for the accepted socket and the TLS socket over it. */
function tupleOf(s: net.Socket): string {
  return `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;
}

function isPromiseLike<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}

function defaultOnEvent(e: HboneServerEvent): void {
  if (e.type === 'connection-refused') process.stderr.write(`hbone: refused connection from ${e.remote}: ${e.reason}\n`);
}

/** Header values must be visible ASCII; reasons are capped. */
function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 512);
}

/** OpenSSL verification codes, in words. */
const VERIFY_ERRORS: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'not issued by a CA in the trust bundle',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'not issued by a CA in the trust bundle',
  UNABLE_TO_GET_ISSUER_CERT: 'not issued by a CA in the trust bundle',
  SELF_SIGNED_CERT_IN_CHAIN: 'its chain ends in a CA that is not in the trust bundle',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed',
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not yet valid',
  CERT_SIGNATURE_FAILURE: 'its signature does not verify',
  INVALID_PURPOSE: 'not usable for TLS client authentication (extended key usage)',
  CERT_REVOKED: 'revoked',
};

function verifyErrorText(err: unknown): string {
  const code = typeof err === 'string' ? err : err instanceof Error ? ((err as NodeJS.ErrnoException).code ?? err.message) : String(err);
  const words = VERIFY_ERRORS[code];
  return words ? `${words} (${code})` : code;
}

const TLS_ERROR_REASONS: Record<string, string> = {
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'the client does not offer TLS 1.3 (only TLS 1.3 is accepted)',
  ERR_SSL_NO_SHARED_CIPHER: 'no TLS 1.3 cipher in common with the client',
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'the client presented no certificate',
  ERR_SSL_NO_APPLICATION_PROTOCOL: `the client does not offer ALPN "${HBONE_ALPN}"`,
  ERR_TLS_HANDSHAKE_TIMEOUT: 'the TLS handshake timed out',
  ERR_SSL_WRONG_VERSION_NUMBER: 'the client does not speak TLS',
  ERR_SSL_HTTP_REQUEST: 'the client sent plaintext HTTP',
};

export class HboneServer {
  private readonly options: HboneServerOptions;
  private readonly onEvent: (e: HboneServerEvent) => void;
  private readonly listener: net.Server;
  private readonly h2: http2.Http2Server;
  /** TLS servers (never listening) by material digest, least recently used first. */
  private readonly tlsServers = new Map<string, tls.Server>();
  private readonly connections = new Set<Connection>();
  /** Accepted TCP sockets, until they close (handshaking ones included). */
  private readonly rawSockets = new Set<net.Socket>();
  private readonly bySession = new WeakMap<Http2Session, Connection>();
  /** The connection being handed to the HTTP/2 server (its 'session' event is synchronous). */
  private handingOver: Connection | undefined;
  private closing = false;
  private readonly counters = {
    connectionsTotal: 0, connectionsRefused: 0, tunnels: 0, tunnelsTotal: 0, tunnelsRefused: 0, bytesFromPeers: 0, bytesToPeers: 0,
  };

  constructor(options: HboneServerOptions) {
    this.options = options;
    this.onEvent = options.onEvent ?? defaultOnEvent;
    // Paused until the TLS socket takes over, so no ClientHello byte is read early.
    this.listener = net.createServer({ pauseOnConnect: true, noDelay: true }, (raw) => this.handleConnection(raw));
    this.h2 = http2.createServer({
      settings: {
        enablePush: false,
        maxConcurrentStreams: options.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS,
        initialWindowSize: options.streamWindowBytes ?? DEFAULT_STREAM_WINDOW_BYTES,
      },
    });
    this.h2.on('session', (session: ServerHttp2Session) => this.onSession(session));
    this.h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => { void this.onStream(stream, headers); });
    this.h2.on('sessionError', () => undefined);
  }

  /** Listens on `host:port` (default port 15008, all interfaces); resolves to the bound address. */
  listen(options: { port?: number; host?: string } = {}): Promise<SocketAddress> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.listener.once('error', onError);
      this.listener.listen(options.port ?? HBONE_PORT, options.host, () => {
        this.listener.off('error', onError);
        resolve(this.address()!);
      });
    });
  }

  address(): SocketAddress | undefined {
    const a = this.listener.address();
    return a && typeof a === 'object' ? { address: a.address, port: a.port } : undefined;
  }

  stats(): HboneServerStats {
    const c = this.counters;
    return {
      connections: this.connections.size,
      connectionsTotal: c.connectionsTotal,
      connectionsRefused: c.connectionsRefused,
      tunnels: c.tunnels,
      tunnelsTotal: c.tunnelsTotal,
      tunnelsRefused: c.tunnelsRefused,
      bytesFromPeers: c.bytesFromPeers,
      bytesToPeers: c.bytesToPeers,
    };
  }

  /**
   * Serves a TCP connection accepted elsewhere (a capture listener, say). Nothing may have
   * been read from it yet: accept with `pauseOnConnect: true`.
   */
  handleConnection(raw: net.Socket): void {
    const info: ConnectionInfo = {
      localAddress: raw.localAddress ?? '', localPort: raw.localPort ?? 0,
      remoteAddress: raw.remoteAddress ?? '', remotePort: raw.remotePort ?? 0,
    };
    const remote = endpointText(info.remoteAddress, info.remotePort);
    // Until the TLS socket owns it; afterwards its errors surface there.
    raw.on('error', () => undefined);
    this.rawSockets.add(raw);
    raw.once('close', () => this.rawSockets.delete(raw));
    if (this.closing) {
      raw.destroy();
      return;
    }
    let material: TlsMaterial | Promise<TlsMaterial>;
    try {
      material = this.options.credentials(info);
    } catch (e) {
      this.refuseConnection(raw, remote, `no credentials for ${endpointText(info.localAddress, info.localPort)}: ${(e as Error).message}`);
      return;
    }
    if (isPromiseLike(material)) {
      material.then(
        (m) => this.startTls(raw, m, remote, info),
        (e: Error) => this.refuseConnection(raw, remote, `no credentials for ${endpointText(info.localAddress, info.localPort)}: ${e.message}`),
      );
    } else {
      this.startTls(raw, material, remote, info);
    }
  }

  /**
   * Stops accepting, sends GOAWAY on every session (open tunnels continue) and resolves
   * once all connections are gone; after `graceMs` the remaining ones are destroyed.
   */
  async close(graceMs = 0): Promise<void> {
    this.closing = true;
    const listening = this.listener.listening
      ? new Promise<void>((r) => this.listener.close(() => r()))
      : Promise.resolve();
    const conns = [...this.connections];
    const gone = Promise.all(conns.map((c) => new Promise<void>((r) => {
      if (c.socket.destroyed) r();
      else c.socket.once('close', () => r());
    })));
    // Connections still in their handshake (or waiting for credentials) just end.
    const established = new Set(conns.map((c) => tupleOf(c.socket)));
    for (const raw of this.rawSockets) {
      if (!established.has(tupleOf(raw))) raw.destroy();
    }
    for (const c of conns) {
      if (c.idleTimer) clearTimeout(c.idleTimer);
      if (graceMs > 0 && c.session && !c.session.destroyed) c.session.close();
      else c.socket.destroy();
    }
    if (graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([gone, new Promise<void>((r) => { timer = setTimeout(r, graceMs); })]);
      clearTimeout(timer);
      for (const c of conns) c.socket.destroy();
    }
    await gone;
    await listening;
  }

  private refuseConnection(socket: net.Socket, remote: string, reason: string): void {
    this.counters.connectionsRefused++;
    socket.destroy();
    this.onEvent({ type: 'connection-refused', remote, reason });
  }

  private startTls(raw: net.Socket, material: TlsMaterial, remote: string, info: ConnectionInfo): void {
    if (raw.destroyed || this.closing) {
      raw.destroy();
      return;
    }
    let server: tls.Server;
    try {
      server = this.tlsServerFor(material);
    } catch (e) {
      this.refuseConnection(raw, remote, `the credentials for ${endpointText(info.localAddress, info.localPort)} are unusable: ${(e as Error).message}`);
      return;
    }
    server.emit('connection', raw);
  }

  private tlsServerFor(m: TlsMaterial): tls.Server {
    const digest = materialDigest(m);
    const cached = this.tlsServers.get(digest);
    if (cached) {
      this.tlsServers.delete(digest);
      this.tlsServers.set(digest, cached);
      return cached;
    }
    const server = tls.createServer({
      key: m.key,
      cert: m.cert,
      ca: m.ca,
      minVersion: HBONE_TLS_VERSION,
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [HBONE_ALPN],
      handshakeTimeout: this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    });
    server.on('secureConnection', (socket: TLSSocket) => this.onSecure(socket));
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => this.onTlsError(err, socket));
    this.tlsServers.set(digest, server);
    if (this.tlsServers.size > MAX_CACHED_CONTEXTS) {
      const oldest = this.tlsServers.keys().next().value;
      if (oldest !== undefined) this.tlsServers.delete(oldest);
    }
    return server;
  }

  private onTlsError(err: NodeJS.ErrnoException, socket: TLSSocket): void {
    const remote = endpointText(socket.remoteAddress, socket.remotePort);
    // A chain that does not verify is refused by Node after the handshake: the socket is
    // destroyed with `authorizationError` set, and this event reports the hang-up.
    const authError = socket.authorizationError as unknown as string | Error | null | undefined;
    const reason = authError
      ? `the client certificate was rejected: ${verifyErrorText(authError)}`
      : `TLS handshake failed: ${(err.code && TLS_ERROR_REASONS[err.code]) ?? err.message}${err.code ? ` (${err.code})` : ''}`;
    this.refuseConnection(socket, remote, reason);
  }

  private onSecure(socket: TLSSocket): void {
    const remote = endpointText(socket.remoteAddress, socket.remotePort);
    socket.on('error', () => undefined);
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (!socket.authorized) {
      this.refuseConnection(socket, remote, `the client certificate was rejected: ${verifyErrorText(socket.authorizationError)}`);
      return;
    }
    if (socket.getProtocol() !== HBONE_TLS_VERSION) {
      this.refuseConnection(socket, remote, `the connection negotiated ${socket.getProtocol()}; only ${HBONE_TLS_VERSION} is accepted`);
      return;
    }
    if (socket.alpnProtocol !== HBONE_ALPN) {
      this.refuseConnection(socket, remote, `the client did not negotiate ALPN "${HBONE_ALPN}"`);
      return;
    }
    const svid = spiffeIdOfCertificate(socket.getPeerX509Certificate());
    if (!svid.ok) {
      this.refuseConnection(socket, remote, `the client certificate carries no usable SPIFFE ID: ${svid.reason}`);
      return;
    }
    const conn: Connection = {
      remote,
      source: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
      socket,
      peer: svid.spiffe,
      tls: tlsFacts(socket),
      tunnels: 0,
    };
    this.connections.add(conn);
    this.counters.connectionsTotal++;
    socket.once('close', () => {
      if (conn.idleTimer) clearTimeout(conn.idleTimer);
      this.connections.delete(conn);
      this.onEvent({ type: 'connection-closed', remote, peerIdentity: conn.peer.id, tunnels: conn.tunnels });
    });
    this.onEvent({ type: 'connection-open', remote, peerIdentity: conn.peer.id, tls: conn.tls });
    this.handingOver = conn;
    try {
      this.h2.emit('connection', socket);
    } finally {
      this.handingOver = undefined;
    }
    if (!conn.session) socket.destroy();
  }

  private onSession(session: ServerHttp2Session): void {
    const conn = this.handingOver;
    if (!conn) {
      session.destroy();
      return;
    }
    conn.session = session;
    this.bySession.set(session, conn);
    session.on('error', () => undefined);
    try {
      session.setLocalWindowSize(this.options.sessionWindowBytes ?? DEFAULT_SESSION_WINDOW_BYTES);
    } catch {
      // The session went away already.
    }
    this.armIdle(conn);
  }

  private armIdle(conn: Connection): void {
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    conn.idleTimer = undefined;
    if (conn.tunnels > 0) return;
    const ms = this.options.idleTimeoutMs ?? DEFAULT_SERVER_IDLE_TIMEOUT_MS;
    if (ms <= 0) return;
    conn.idleTimer = setTimeout(() => {
      if (conn.tunnels === 0 && conn.session && !conn.session.closed) conn.session.close();
    }, ms);
    conn.idleTimer.unref();
  }

  private refuseTunnel(stream: ServerHttp2Stream, conn: Connection, authority: string, status: number, reason: string): void {
    this.counters.tunnelsRefused++;
    this.onEvent({ type: 'tunnel-refused', remote: conn.remote, peerIdentity: conn.peer.id, authority, status, reason });
    if (stream.destroyed || stream.closed) return;
    if (stream.headersSent) {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    stream.respond({ ':status': status, [REASON_HEADER]: headerSafe(reason) }, { endStream: true });
  }

  private async onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    stream.on('error', () => undefined);
    const session = stream.session;
    const conn = session ? this.bySession.get(session) : undefined;
    if (!conn) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const rawAuthority = headers[':authority'] ?? '';
    const method = headers[':method'];
    if (method !== 'CONNECT') {
      this.refuseTunnel(stream, conn, rawAuthority, 405, `only CONNECT is served here, not ${String(method)}`);
      return;
    }
    const authority = parseAuthority(rawAuthority);
    if (!authority) {
      this.refuseTunnel(stream, conn, rawAuthority, 400, `the CONNECT authority ${JSON.stringify(rawAuthority)} is not <ip>:<port>`);
      return;
    }
    if (this.closing) {
      this.refuseTunnel(stream, conn, rawAuthority, 503, 'the node is shutting down');
      return;
    }
    const target = formatAuthority(authority);
    const started = Date.now();
    conn.tunnels++;
    this.counters.tunnels++;
    this.counters.tunnelsTotal++;
    this.armIdle(conn);
    stream.once('close', () => {
      conn.tunnels--;
      this.counters.tunnels--;
      this.armIdle(conn);
    });

    let decision: TunnelDecision;
    try {
      decision = await this.options.onTunnel({
        peerIdentity: conn.peer.id, peer: conn.peer, authority, source: conn.source, tls: conn.tls, headers, stream,
      });
    } catch (e) {
      this.refuseTunnel(stream, conn, target, 500, `the tunnel policy failed: ${(e as Error).message}`);
      return;
    }
    if (stream.destroyed || stream.closed) return;
    if (!decision.allow) {
      this.refuseTunnel(stream, conn, target, decision.status ?? 403, decision.reason);
      return;
    }
    // Whoever writes to the tunnel, its writes arrive whole (see stream-writes.ts).
    joinBatchedWrites(stream);
    if (decision.serve) {
      stream.respond({ ':status': 200 });
      this.onEvent({ type: 'tunnel-served', remote: conn.remote, peerIdentity: conn.peer.id, authority: target });
      decision.serve(stream);
      return;
    }
    let upstream: Duplex;
    try {
      const connect = decision.connect
        ?? (() => connectTcp(authority, this.options.upstreamConnectTimeoutMs ?? DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS));
      upstream = await connect();
    } catch (e) {
      this.refuseTunnel(stream, conn, target, 503, `could not connect to ${target}: ${(e as Error).message}`);
      return;
    }
    if (stream.destroyed || stream.closed) {
      upstream.destroy();
      return;
    }
    stream.respond({ ':status': 200 });
    const result = await pipeBothWays(stream, upstream, {
      nameA: 'peer',
      nameB: 'upstream',
      // RFC 9113 §8.5: a failed TCP connection ends the tunnel with CONNECT_ERROR.
      abortA: (s) => { if (!s.destroyed) (s as ServerHttp2Stream).close(http2.constants.NGHTTP2_CONNECT_ERROR); },
    });
    // Both directions are done (or aborted): release the upstream; the stream closes itself.
    if (!upstream.destroyed) upstream.destroy();
    this.counters.bytesFromPeers += result.bytesFromA;
    this.counters.bytesToPeers += result.bytesFromB;
    this.onEvent({
      type: 'tunnel-closed', remote: conn.remote, peerIdentity: conn.peer.id, authority: target,
      bytesFromPeer: result.bytesFromA, bytesToPeer: result.bytesFromB, durationMs: Date.now() - started,
      ...(result.error ? { error: result.error } : {}),
    });
  }
}
