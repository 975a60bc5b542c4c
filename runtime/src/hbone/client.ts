/**
 * The HBONE outbound side: tunnels are HTTP/2 CONNECT streams over mutual TLS 1.3 to the
 * destination node, presenting the source workload's certificate. One session per
 * (source identity, destination node) carries every tunnel between them; a session that
 * closes, errors or receives GOAWAY is replaced on the next `open`, one whose source
 * certificate rotated drains while new tunnels take a new one, and one left without
 * tunnels is closed after `idleTimeoutMs`.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import tls, { type TLSSocket } from 'node:tls';
import { formatAuthority, isSocketAddress, type SocketAddress } from './authority.js';
import { HboneError } from './errors.js';
import { DEFAULT_SESSION_WINDOW_BYTES, DEFAULT_STREAM_WINDOW_BYTES, REASON_HEADER } from './server.js';
import { spiffeIdOfCertificate } from './spiffe.js';
import { HBONE_ALPN, HBONE_TLS_VERSION, materialDigest, tlsFacts, type TlsFacts, type TlsMaterial } from './tls.js';
import { joinBatchedWrites } from './stream-writes.js';

/** TCP + TLS + the server's SETTINGS, and then the CONNECT's response, each within this. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** A session without tunnels is closed after this. */
export const DEFAULT_CLIENT_IDLE_TIMEOUT_MS = 60_000;

/** The key, certificate chain and trust bundle of a source identity (its current ones). */
export type ClientCredentialsProvider = (sourceIdentity: string) => TlsMaterial | Promise<TlsMaterial>;

export interface HboneClientOptions {
  credentials: ClientCredentialsProvider;
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** Flow-control windows; see `DEFAULT_STREAM_WINDOW_BYTES` before raising them. */
  streamWindowBytes?: number;
  sessionWindowBytes?: number;
}

export interface OpenOptions {
  /** The source workload's SPIFFE ID: whose certificate is presented. */
  sourceIdentity: string;
  /** The destination node's HBONE listener. */
  node: SocketAddress;
  /** The destination workload (the CONNECT authority). */
  target: SocketAddress;
  /** Checks the server's SPIFFE ID (see `expectSpiffeId`, `expectTrustDomain`); default: any valid one. */
  expectServer?: (spiffeId: string) => boolean;
  /** Extra request headers on the CONNECT. */
  headers?: Record<string, string>;
  /** Overrides the client's `connectTimeoutMs` for this call. */
  timeoutMs?: number;
  /** SNI sent when a new session to `node` is made (e.g. the node's name); none by default. */
  servername?: string;
}

/** A tunnel: a duplex byte stream to the target, with what was learnt opening it. */
export type HboneTunnel = ClientHttp2Stream & {
  hbone: { serverIdentity: string; tls: TlsFacts; node: SocketAddress; target: SocketAddress };
};

export interface HboneClientStats {
  sessions: number;
  sessionsTotal: number;
  tunnels: number;
  tunnelsTotal: number;
}

interface Ready {
  session: ClientHttp2Session;
  serverIdentity: string;
  tls: TlsFacts;
}

interface Pooled {
  key: string;
  digest: string;
  ready: Promise<Ready>;
  socket?: TLSSocket;
  session?: ClientHttp2Session;
  active: number;
  idleTimer?: NodeJS.Timeout;
  closed: boolean;
}

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EADDRNOTAVAIL', 'EADDRINUSE']);

export class HboneClient {
  private readonly options: HboneClientOptions;
  /** The session new tunnels use, per key. */
  private readonly pool = new Map<string, Pooled>();
  /** Every live session, draining ones included. */
  private readonly all = new Set<Pooled>();
  private closed = false;
  private readonly counters = { sessionsTotal: 0, tunnels: 0, tunnelsTotal: 0 };

  constructor(options: HboneClientOptions) {
    this.options = options;
  }

  stats(): HboneClientStats {
    return { sessions: this.all.size, ...this.counters };
  }

  /**
   * Opens a tunnel to `target` through `node`'s HBONE listener. Resolves with the CONNECT
   * stream once the server answered 200; rejects with an `HboneError` (a refusal carries
   * the status and the server's reason).
   */
  async open(o: OpenOptions): Promise<HboneTunnel> {
    if (this.closed) throw new HboneError('closed', 'the HBONE client is closed');
    if (!isSocketAddress(o.node)) throw new HboneError('invalid-argument', `node ${JSON.stringify(o.node)} is not an IP address and port`);
    if (!isSocketAddress(o.target)) throw new HboneError('invalid-argument', `target ${JSON.stringify(o.target)} is not an IP address and port`);
    if (!o.sourceIdentity) throw new HboneError('invalid-argument', 'no source identity');
    const timeoutMs = o.timeoutMs ?? this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const state: { stream?: ClientHttp2Stream; timedOut: boolean } = { timedOut: false };
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        state.timedOut = true;
        if (state.stream && !state.stream.destroyed) state.stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new HboneError('connect-timeout', `the tunnel to ${formatAuthority(o.target)} via ${formatAuthority(o.node)} did not open within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.attempt(o, state), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes every session now; open tunnels are reset. */
  async close(): Promise<void> {
    this.closed = true;
    const sessions = [...this.all];
    this.pool.clear();
    await Promise.all(sessions.map((p) => new Promise<void>((resolve) => {
      this.retire(p);
      const s = p.session;
      if (!s) {
        // Still connecting: ending the socket fails the pending session.
        p.ready.then((r) => r.session.destroy(), () => undefined).finally(resolve);
        p.socket?.destroy();
        return;
      }
      if (s.destroyed) {
        resolve();
        return;
      }
      s.once('close', () => resolve());
      s.destroy();
    })));
  }

  private async attempt(o: OpenOptions, state: { stream?: ClientHttp2Stream; timedOut: boolean }): Promise<HboneTunnel> {
    const node = formatAuthority(o.node);
    const target = formatAuthority(o.target);
    let material: TlsMaterial;
    try {
      material = await this.options.credentials(o.sourceIdentity);
    } catch (e) {
      throw new HboneError('credentials', `no credentials for ${o.sourceIdentity}: ${(e as Error).message}`, { cause: e });
    }
    // A session can go away between being picked and the request (GOAWAY, close): one retry.
    for (let tries = 1; ; tries++) {
      if (this.closed) throw new HboneError('closed', 'the HBONE client is closed');
      if (state.timedOut) throw new HboneError('connect-timeout', 'timed out');
      const pooled = this.sessionFor(o.sourceIdentity, o.node, material, o.servername);
      const ready = await pooled.ready;
      if (o.expectServer && !o.expectServer(ready.serverIdentity)) {
        throw new HboneError('server-identity', `${node} presented ${ready.serverIdentity}, which is not the server identity expected for ${target}`);
      }
      if (state.timedOut) throw new HboneError('connect-timeout', 'timed out');
      let stream: ClientHttp2Stream;
      try {
        stream = joinBatchedWrites(ready.session.request({ ...o.headers, ':method': 'CONNECT', ':authority': target }, { endStream: false }));
      } catch (e) {
        this.retire(pooled);
        if (tries < 2) continue;
        throw new HboneError('reset', `the HBONE session to ${node} could not take a new tunnel: ${(e as Error).message}`, { cause: e });
      }
      state.stream = stream;
      this.tunnelStarted(pooled);
      stream.once('close', () => this.tunnelEnded(pooled));
      const outcome = await this.response(stream, node, target);
      if (outcome === 'refused-stream' && tries < 2) {
        this.retire(pooled);
        continue;
      }
      if (outcome === 'refused-stream') throw new HboneError('reset', `${node} refused the stream for ${target} (REFUSED_STREAM)`);
      if (state.timedOut) {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        throw new HboneError('connect-timeout', 'timed out');
      }
      const tunnel = stream as HboneTunnel;
      tunnel.hbone = { serverIdentity: ready.serverIdentity, tls: ready.tls, node: o.node, target: o.target };
      return tunnel;
    }
  }

  /** Waits for the CONNECT's response: 'ok' on 200, 'refused-stream' when retrying is safe; rejects otherwise. */
  private response(stream: ClientHttp2Stream, node: string, target: string): Promise<'ok' | 'refused-stream'> {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        stream.off('response', onResponse);
        stream.off('error', onError);
        stream.off('close', onClose);
      };
      const onResponse = (h: IncomingHttpHeaders) => {
        cleanup();
        const status = Number(h[':status']);
        if (status === 200) {
          resolve('ok');
          return;
        }
        const raw = h[REASON_HEADER];
        const reason = Array.isArray(raw) ? raw.join(', ') : raw ?? '';
        stream.on('error', () => undefined);
        if (!stream.destroyed) stream.close();
        reject(new HboneError('refused', `${node} refused the tunnel to ${target}: ${status}${reason ? ` ${reason}` : ''}`, { status, reason }));
      };
      const onError = (e: Error) => {
        cleanup();
        if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) resolve('refused-stream');
        else reject(new HboneError('reset', `the tunnel to ${target} via ${node} failed before a response: ${e.message}`, { cause: e }));
      };
      const onClose = () => {
        cleanup();
        if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) resolve('refused-stream');
        else reject(new HboneError('reset', `the tunnel to ${target} via ${node} closed before a response (code ${stream.rstCode})`));
      };
      stream.once('response', onResponse);
      stream.once('error', onError);
      stream.once('close', onClose);
    });
  }

  private sessionFor(sourceIdentity: string, node: SocketAddress, material: TlsMaterial, servername?: string): Pooled {
    const key = `${sourceIdentity}\u0000${formatAuthority(node)}`;
    const digest = materialDigest(material);
    const existing = this.pool.get(key);
    if (existing && !existing.closed) {
      if (existing.digest === digest) return existing;
      // The source certificate rotated: new tunnels get a new session, this one drains.
      this.drain(existing);
    }
    const pooled: Pooled = { key, digest, active: 0, closed: false, ready: undefined as unknown as Promise<Ready> };
    pooled.ready = this.connect(pooled, sourceIdentity, node, material, servername);
    pooled.ready.catch(() => undefined);
    this.pool.set(key, pooled);
    this.all.add(pooled);
    this.counters.sessionsTotal++;
    return pooled;
  }

  /** No new tunnels on this session. */
  private retire(p: Pooled): void {
    if (this.pool.get(p.key) === p) this.pool.delete(p.key);
  }

  /** No new tunnels; closes (GOAWAY) once the open ones are done. */
  private drain(p: Pooled): void {
    this.retire(p);
    p.ready.then((r) => { if (!r.session.closed && !r.session.destroyed) r.session.close(); }, () => undefined);
  }

  private gone(p: Pooled): void {
    p.closed = true;
    if (p.idleTimer) clearTimeout(p.idleTimer);
    this.retire(p);
    this.all.delete(p);
  }

  private tunnelStarted(p: Pooled): void {
    p.active++;
    this.counters.tunnels++;
    this.counters.tunnelsTotal++;
    if (p.idleTimer) clearTimeout(p.idleTimer);
    p.idleTimer = undefined;
    if (p.session && !p.session.destroyed) p.session.ref();
  }

  private tunnelEnded(p: Pooled): void {
    p.active--;
    this.counters.tunnels--;
    this.armIdle(p);
  }

  private armIdle(p: Pooled): void {
    if (p.active > 0 || p.closed || !p.session || p.session.destroyed) return;
    // An idle pool does not keep the process alive.
    p.session.unref();
    if (p.idleTimer) clearTimeout(p.idleTimer);
    const ms = this.options.idleTimeoutMs ?? DEFAULT_CLIENT_IDLE_TIMEOUT_MS;
    p.idleTimer = setTimeout(() => {
      if (p.active === 0) {
        this.retire(p);
        if (p.session && !p.session.closed && !p.session.destroyed) p.session.close();
      }
    }, ms);
    p.idleTimer.unref();
  }

  private connect(p: Pooled, sourceIdentity: string, nodeAddr: SocketAddress, material: TlsMaterial, servername?: string): Promise<Ready> {
    const node = formatAuthority(nodeAddr);
    const timeoutMs = this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    return new Promise<Ready>((resolve, reject) => {
      let settled = false;
      let secure = false;
      let session: ClientHttp2Session | undefined;
      const fail = (err: HboneError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.gone(p);
        session?.destroy();
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(() => {
        fail(new HboneError('connect-timeout', `no HBONE session with ${node} within ${timeoutMs} ms (${secure ? 'no HTTP/2 SETTINGS from the server' : 'TCP/TLS not established'})`));
      }, timeoutMs);
      timer.unref();

      let socket: TLSSocket;
      try {
        socket = tls.connect({
          host: nodeAddr.address,
          port: nodeAddr.port,
          key: material.key,
          cert: material.cert,
          ca: material.ca,
          minVersion: HBONE_TLS_VERSION,
          ALPNProtocols: [HBONE_ALPN],
          ...(servername ? { servername } : {}),
          rejectUnauthorized: true,
          // The server is authenticated by its SPIFFE ID (below), not by a host name.
          checkServerIdentity: () => undefined,
        });
      } catch (e) {
        clearTimeout(timer);
        this.gone(p);
        reject(new HboneError('credentials', `cannot use the credentials of ${sourceIdentity}: ${(e as Error).message}`, { cause: e }));
        return;
      }
      p.socket = socket;
      socket.setNoDelay(true);
      socket.on('error', (e: NodeJS.ErrnoException) => {
        const code = e.code ?? '';
        if (!secure && NETWORK_ERRORS.has(code)) {
          fail(new HboneError('connect-failure', `connect to ${node} failed: ${code}`, { cause: e }));
        } else if (!secure) {
          fail(new HboneError('tls', `the TLS handshake with ${node} failed: ${code ? `${code}: ` : ''}${e.message}`, { cause: e }));
        } else {
          fail(new HboneError('tls', `${node} ended the connection after the TLS handshake, before accepting the session (${code || e.message}): it refused the client certificate of ${sourceIdentity}?`, { cause: e }));
        }
      });
      socket.once('close', () => {
        fail(new HboneError('tls', secure
          ? `${node} closed the connection after the TLS handshake, before accepting the session: it refused the client certificate of ${sourceIdentity}?`
          : `${node} closed the connection during the TLS handshake`));
      });
      socket.once('secureConnect', () => {
        secure = true;
        if (!socket.authorized) {
          fail(new HboneError('tls', `${node}'s certificate did not verify: ${String(socket.authorizationError)}`));
          return;
        }
        if (socket.getProtocol() !== HBONE_TLS_VERSION) {
          fail(new HboneError('tls', `${node} negotiated ${socket.getProtocol()}; only ${HBONE_TLS_VERSION} is accepted`));
          return;
        }
        if (socket.alpnProtocol !== HBONE_ALPN) {
          fail(new HboneError('tls', `${node} did not negotiate ALPN "${HBONE_ALPN}"`));
          return;
        }
        const svid = spiffeIdOfCertificate(socket.getPeerX509Certificate());
        if (!svid.ok) {
          fail(new HboneError('server-identity', `${node}'s certificate carries no usable SPIFFE ID: ${svid.reason}`));
          return;
        }
        const facts = tlsFacts(socket);
        const s = http2.connect(`https://${node}`, {
          createConnection: () => socket,
          settings: { enablePush: false, initialWindowSize: this.options.streamWindowBytes ?? DEFAULT_STREAM_WINDOW_BYTES },
        });
        session = s;
        p.session = s;
        s.on('error', (e: NodeJS.ErrnoException) => {
          this.retire(p);
          fail(new HboneError('tls', `the HBONE session with ${node} failed before it was accepted: ${e.code ?? e.message}`, { cause: e }));
        });
        s.once('goaway', () => this.retire(p));
        s.once('close', () => {
          this.gone(p);
          fail(new HboneError('tls', `${node} closed the HBONE session before accepting it`));
        });
        // The server's first SETTINGS: it verified our certificate and SPIFFE ID and serves us.
        s.once('remoteSettings', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          try {
            s.setLocalWindowSize(this.options.sessionWindowBytes ?? DEFAULT_SESSION_WINDOW_BYTES);
          } catch {
            // Closed meanwhile; the next open replaces it.
          }
          resolve({ session: s, serverIdentity: svid.spiffe.id, tls: facts });
          this.armIdle(p);
        });
      });
    });
  }
}
