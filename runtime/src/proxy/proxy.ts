/**
 * The node proxy: listeners in, routes and filter chains from the current state
 * snapshot, L4 splice or the L7 pipeline out. The data path reads as traffic flows:
 *
 *   accept → original destination → source workload → route → connection phase
 *   → (L7 bound? sniff: HTTP/1.1 | HTTP/2 → L7 pipeline) | L4 splice
 *
 * mTLS between nodes (HBONE) is served by the native data path only (`../native-path`);
 * a node with `identity` runs there.
 */
import http, { type IncomingMessage } from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo, type Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { ServerHttp2Stream } from 'node:http2';
import { applyRequestOps, type Connection, type Direction, type RequestHead } from '../deps.js';
import type { Telemetry } from '../telemetry/types.js';
import { Http1Client } from '../upstream/http1.js';
import { Http2Client } from '../upstream/http2.js';
import { recordResult } from '../upstream/outlier.js';
import { connectionRoute, connOf, filterContext, kConn, peerRecord, type ConnInfo, type SocketWithConn } from './context.js';
import { fromRawHeaders, headerValue } from './headers.js';
import { createRequestHandler } from './http.js';
import { splice } from './l4.js';
import { passthroughRoute } from './passthrough.js';
import { sniff, SniffTimeout } from './sniff.js';
import type { ProxyState, Route } from './state.js';
import { upgradeUpstream } from './websocket.js';

/** TLS facts of the connection, for the connection phase (absent: plaintext). */
type TlsInfo = NonNullable<Connection['tls']>;

export interface ListenerSpec {
  name: string;
  direction: Direction;
  address: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** Where connections go when the socket carries no original destination. */
  target?: { address: string; port: number };
}

/** Reads the original destination of a redirected socket (eBPF or nftables capture); null if none. */
export type OriginalDstReader = (socket: Socket) => { address: string; port: number } | null;

export interface NodeProxyOptions {
  listeners: ListenerSpec[];
  state: ProxyState;
  telemetry: Telemetry;
  originalDst?: OriginalDstReader;
}

interface BoundListener {
  spec: ListenerSpec;
  server: net.Server;
}

export class NodeProxy {
  private current: ProxyState;
  private readonly bound: BoundListener[] = [];
  private readonly http1Server: http.Server;
  private readonly http2Server: http2.Http2Server;
  private readonly http1 = new Http1Client();
  private readonly http2 = new Http2Client();
  private readonly sockets = new Set<Socket>();
  private closing = false;
  private readonly handler: ReturnType<typeof createRequestHandler>;
  /** Open byte splices and the policy they were admitted under (see `swap`). */
  private readonly splices = new Map<Duplex, { conn: ConnInfo; policyKey: string | undefined }>();

  constructor(private readonly options: NodeProxyOptions) {
    this.current = options.state;
    const limits = this.current.limits;
    const handler = createRequestHandler({
      state: () => this.current, telemetry: options.telemetry, http1: this.http1, http2: this.http2,
    });
    this.handler = handler;
    this.http1Server = http.createServer({
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      connectionsCheckingInterval: 1_000,
      insecureHTTPParser: false,
      joinDuplicateHeaders: false,
    }, handler);
    this.http1Server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket));
    this.http1Server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.onUpgrade(req, socket as Socket, head).catch((e: unknown) => {
        options.telemetry.error('upgrade failed', { error: String(e) });
        socket.destroy();
      });
    });
    this.http2Server = http2.createServer({
      maxSessionMemory: 64,
      settings: { maxHeaderListSize: limits.maxHeaderBytes },
      maxSendHeaderBlockLength: limits.maxHeaderBytes,
    }, handler);
    this.http2Server.on('sessionError', (e) => options.telemetry.warn('HTTP/2 session error', { error: e.message }));
    this.http2Server.setTimeout(limits.idleTimeoutMs);
  }

  get state(): ProxyState {
    return this.current;
  }

  /** Starts every listener. */
  async start(): Promise<void> {
    for (const spec of this.options.listeners) {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) => this.onConnection(spec, s));
      server.on('error', (e) => this.options.telemetry.error(`listener ${spec.name} failed`, { error: e.message }));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: spec.address, port: spec.port }, () => { server.off('error', reject); resolve(); });
      });
      this.bound.push({ spec, server });
      const a = server.address() as AddressInfo;
      this.options.telemetry.info(`listening: ${spec.name} (${spec.direction}) on ${a.address}:${a.port}`);
    }
  }

  /** Where each listener ended up (port 0 → the real port). */
  addresses(): Record<string, { address: string; port: number }> {
    const out: Record<string, { address: string; port: number }> = {};
    for (const b of this.bound) {
      const a = b.server.address() as AddressInfo;
      out[b.spec.name] = { address: a.address, port: a.port };
    }
    return out;
  }

  /**
   * Swaps in a new state snapshot. Requests that already started finish on the old
   * one; its filter chains close when they are done.
   */
  async swap(next: ProxyState): Promise<void> {
    const old = this.current;
    this.current = next;
    // A byte splice was admitted under the filters of its time; where the new config binds
    // other filters to its destination, it is closed (as ztunnel does on a policy change), so
    // that the client's next connection meets the new policy.
    let closed = 0;
    for (const [socket, s] of this.splices) {
      const r = next.route(s.conn.direction, s.conn.destination.address, s.conn.destination.port);
      if (r && (r.l7 || r.connectionPhase) && r.policyKey !== s.policyKey) {
        socket.destroy();
        closed++;
      }
    }
    if (closed > 0) this.options.telemetry.info(`config change: closed ${closed} spliced connection(s) admitted under filters that no longer apply`);
    await old.close();
  }

  /** Stops accepting, lets open connections finish for up to `drainMs`, then closes the rest. */
  async close(drainMs = 5_000): Promise<void> {
    this.closing = true;
    // Stop accepting now; a listener's close completes once its last connection has gone,
    // which the drain below bounds.
    const listenersClosed = Promise.all(this.bound.map((b) => new Promise<void>((r) => b.server.close(() => r()))));
    this.http1Server.closeIdleConnections();
    const deadline = Date.now() + drainMs;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.sockets.size > 0) this.options.telemetry.warn(`shutting down: ${this.sockets.size} connection(s) still open after ${drainMs} ms; closing them`);
    for (const s of this.sockets) s.destroy();
    await listenersClosed;
    this.http1Server.close();
    this.http2Server.close();
    await Promise.all([this.http1.close(), this.http2.close()]);
    await this.current.close();
  }

  private isOwnListener(address: string, port: number): boolean {
    return this.bound.some((b) => {
      const a = b.server.address() as AddressInfo;
      return a.port === port && (a.address === address || a.address === '0.0.0.0' || a.address === '::');
    });
  }

  private async onConnection(spec: ListenerSpec, socket: Socket): Promise<void> {
    if (this.closing) { socket.destroy(); return; }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => { /* reported by whoever handles the socket */ });
    const t = this.options.telemetry;
    const started = performance.now();
    const state = this.current;

    const redirected = this.options.originalDst?.(socket) ?? null;
    const destination = redirected ?? spec.target;
    if (!destination) {
      t.warn(`listener ${spec.name}: connection has no original destination and the listener has no target; closing`, { source: socket.remoteAddress });
      socket.destroy();
      return;
    }
    if (this.isOwnListener(destination.address, destination.port)) {
      t.error(`listener ${spec.name}: connection's destination ${destination.address}:${destination.port} is the proxy itself; closing to avoid a loop`);
      socket.destroy();
      return;
    }
    const sourceAddress = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const workload = state.workloadByAddress(sourceAddress);
    const conn: ConnInfo = {
      direction: spec.direction,
      source: {
        address: sourceAddress, port: socket.remotePort ?? 0, workload,
        // Outbound traffic comes from a local workload: the proxy acts with its identity.
        // Plaintext inbound traffic carries none.
        identity: spec.direction === 'outbound' ? workload?.identity : undefined,
      },
      destination: { address: destination.address, port: destination.port },
      destinationFrom: redirected ? 'so_original_dst' : 'listener-target',
    };
    await this.serve(socket, conn, state, started, undefined);
  }

  /**
   * Everything after the connection's facts are known, for a TCP connection and an HBONE
   * tunnel stream alike: route → connection phase → L7 pipeline or L4 splice.
   */
  private async serve(socket: Duplex, conn: ConnInfo, state: ProxyState, started: number, tls: TlsInfo | undefined): Promise<void> {
    const t = this.options.telemetry;
    const spec = { direction: conn.direction };
    const counts = socket as Partial<Pick<Socket, 'bytesRead' | 'bytesWritten'>>;
    (socket as SocketWithConn)[kConn] = conn;
    const route = connectionRoute(state, conn);
    const ctx = filterContext(conn, route, randomUUID(), 1);
    const record = (mode: 'l4' | 'l7', extra: { bytesReceived?: number; bytesSent?: number; error?: string; denied?: { filter: string; reason: string }; upstream?: { address: string; port: number } }) => t.connection({
      direction: spec.direction, mode, source: peerRecord(ctx.source), destination: peerRecord(ctx.destination), service: route?.service,
      bytesReceived: extra.bytesReceived ?? counts.bytesRead ?? 0, bytesSent: extra.bytesSent ?? counts.bytesWritten ?? 0,
      durationMs: performance.now() - started, denied: extra.denied, error: extra.error, upstream: extra.upstream,
    });

    if (route?.chain && route.connectionPhase) {
      // The phase runs on the snapshot it started on, even if a reload swaps it meanwhile
      // (HTTP requests retain theirs per request).
      const release = state.retain();
      const out = await route.chain.run({ phase: 'connection', conn: { context: ctx, tls } }).finally(release);
      t.filterPhase('connection', out);
      if (out.action === 'deny') {
        const denied = { filter: out.filter, reason: out.reason };
        socket.destroy();
        record(route.l7 ? 'l7' : 'l4', { denied });
        return;
      }
    }

    if (route?.l7 && route.protocol !== 'tcp') {
      let proto;
      try {
        proto = await sniff(socket, state.limits.sniffTimeoutMs);
      } catch (e) {
        const why = e instanceof SniffTimeout
          ? `${e.message}; HTTP filters are bound to ${route.service ?? route.name}, so the connection is closed (declare the port protocol: tcp for server-first protocols)`
          : String(e);
        socket.destroy();
        record('l7', { error: why });
        return;
      }
      if (proto === 'http1' || proto === 'http2') {
        socket.once('close', () => record('l7', {}));
        (proto === 'http1' ? this.http1Server : this.http2Server).emit('connection', socket);
        socket.resume();
        return;
      }
    }
    await this.spliceTo(socket, conn, route ?? passthroughRoute(conn), record);
  }

  private async spliceTo(
    socket: Duplex, conn: ConnInfo, route: Route,
    record: (mode: 'l4', extra: { bytesReceived?: number; bytesSent?: number; error?: string; upstream?: { address: string; port: number } }) => void,
  ): Promise<void> {
    const ep = route.balancer.pick(route.endpoints);
    if (!ep) {
      socket.destroy();
      record('l4', { error: `no endpoints for ${route.service ?? route.name}` });
      return;
    }
    ep.active++;
    this.splices.set(socket, { conn, policyKey: route.policyKey });
    const r = await splice(socket, ep.address, ep.port, route.connectTimeoutMs).finally(() => this.splices.delete(socket));
    ep.active--;
    recordResult(ep, r.connectFailed, route.endpoints, route.outlier);
    record('l4', { bytesReceived: r.bytesReceived, bytesSent: r.bytesSent, error: r.error, upstream: { address: ep.address, port: ep.port } });
  }

  private async onUpgrade(req: IncomingMessage, socket: Socket, firstBytes: Buffer): Promise<void> {
    const conn = connOf(socket);
    if (!conn) { socket.destroy(); return; }
    if (/^\s*h2c\s*$/i.test(req.headers.upgrade ?? '')) {
      // Upgrade to cleartext HTTP/2 is declined (as Envoy does): the request is served
      // as HTTP/1.1 through the filters, and the connection closes after it. Splicing it
      // would let every later stream bypass the L7 filters.
      if (firstBytes.length > 0) socket.unshift(firstBytes);
      const res = new http.ServerResponse(req);
      res.shouldKeepAlive = false;
      res.assignSocket(socket);
      res.once('finish', () => { res.detachSocket(socket); socket.end(); });
      this.handler(req, res);
      return;
    }
    const state = this.current;
    const release = state.retain();
    const route = connectionRoute(state, conn) ?? passthroughRoute(conn);
    const head: RequestHead = {
      method: req.method ?? 'GET', scheme: 'http', authority: req.headers.host ?? '', path: req.url ?? '/', headers: fromRawHeaders(req.rawHeaders),
    };
    const requestId = headerValue(head.headers, 'x-request-id') ?? randomUUID();
    if (!headerValue(head.headers, 'x-request-id')) head.headers.push(['x-request-id', requestId]);
    const ctx = filterContext(conn, route, requestId, 1);
    const started = performance.now();
    const base = {
      direction: conn.direction, protocol: 'http/1.1', method: head.method, authority: head.authority, path: head.path, requestId,
      source: peerRecord(ctx.source), destination: peerRecord(ctx.destination), service: route.service, attempts: 1,
      userAgent: headerValue(head.headers, 'user-agent'),
    };
    if (route.chain && route.l7) {
      const out = await route.chain.run({ phase: 'requestHeaders', ctx, request: head }).finally(release);
      this.options.telemetry.filterPhase('requestHeaders', out);
      if (out.action === 'respond') {
        const body = Buffer.from(out.response.body);
        const lines = [`HTTP/1.1 ${out.response.status} ${http.STATUS_CODES[out.response.status] ?? ''}`, 'connection: close', `content-length: ${body.length}`];
        for (const [k, v] of out.response.headers) lines.push(`${k}: ${v}`);
        socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), body]));
        this.options.telemetry.request({ ...base, status: out.response.status, durationMs: performance.now() - started, bytesReceived: socket.bytesRead, bytesSent: socket.bytesWritten, localReply: { filter: out.filter, reason: `status ${out.response.status}` } });
        return;
      }
      if (out.action === 'continue') applyRequestOps(head, out.ops);
    }
    release();
    const ep = route.balancer.pick(route.endpoints);
    if (!ep) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 20\r\n\r\nno healthy upstream\n');
      return;
    }
    ep.active++;
    const r = await upgradeUpstream(req, head, socket, firstBytes, ep.address, ep.port, route.connectTimeoutMs);
    ep.active--;
    this.options.telemetry.request({
      ...base, status: 101, durationMs: performance.now() - started, bytesReceived: r.bytesReceived, bytesSent: r.bytesSent,
      upstream: { address: ep.address, port: ep.port }, upstreamError: r.error,
    });
  }

  /** Malformed HTTP: answered 400/431/408 and closed, never forwarded. */
  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const code = err.code ?? 'UNKNOWN';
    const conn = connOf(socket);
    if (code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const body = `${status === 431 ? 'request headers too large' : status === 408 ? 'request timeout' : 'malformed request'}: ${code}\n`;
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    setTimeout(() => socket.destroy(), 1_000).unref();
    if (conn) {
      const ctx = filterContext(conn, undefined, randomUUID(), 1);
      this.options.telemetry.request({
        direction: conn.direction, protocol: 'http/1.1', method: '-', authority: '-', path: '-', status, durationMs: 0,
        requestId: ctx.requestId, source: peerRecord(ctx.source), destination: peerRecord(ctx.destination), attempts: 0,
        bytesReceived: (socket as Socket).bytesRead ?? 0, bytesSent: 0, localReply: { filter: 'ambit', reason: `${code}: ${err.message}` },
      });
    }
  }
}
