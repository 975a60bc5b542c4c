/** HTTP/1.1 to upstreams through undici connection pools, one pool per endpoint, kept across reloads. */
import type { Socket } from 'node:net';
import { Pool, errors as undiciErrors, type buildConnector } from 'undici';
import type { Duplex } from 'node:stream';
import { DialError, type Dialer } from './dialer.js';
import { endpointKey } from './endpoint.js';
import { fromHeaderObject, toHeaderObject } from '../proxy/headers.js';
import { UpstreamError, type UpstreamClient, type UpstreamRequest, type UpstreamResponse } from './types.js';
import type { Headers } from '../deps.js';

export interface Http1ClientOptions {
  /** Idle upstream connections are closed after this. Default 30 s. */
  keepAliveTimeoutMs?: number;
}

export class Http1Client implements UpstreamClient {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly options: Http1ClientOptions = {}) {}

  private pool(address: string, port: number, connectTimeoutMs: number, dial: Dialer | undefined): Pool {
    const key = `${endpointKey(address, port)}/${connectTimeoutMs}${dial ? `/${dial.key}` : ''}`;
    let p = this.pools.get(key);
    if (!p) {
      const host = address.includes(':') ? `[${address}]` : address;
      p = new Pool(`http://${host}:${port}`, {
        connect: dial ? dialConnector(dial, connectTimeoutMs) : { timeout: connectTimeoutMs },
        keepAliveTimeout: this.options.keepAliveTimeoutMs ?? 30_000,
        pipelining: 1,
        // Timeouts are set per request.
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      this.pools.set(key, p);
    }
    return p;
  }

  async send(address: string, port: number, req: UpstreamRequest): Promise<UpstreamResponse> {
    const headers = toHeaderObject(req.headers);
    headers.host = req.authority;
    try {
      const res = await this.pool(address, port, req.connectTimeoutMs, req.dial).request({
        method: req.method as 'GET',
        path: req.path,
        headers,
        body: req.body,
        headersTimeout: req.timeoutMs,
        bodyTimeout: req.timeoutMs,
        signal: req.signal,
      });
      const trailers = new Promise<Headers>((resolve) => {
        res.body.once('end', () => resolve(fromHeaderObject(res.trailers ?? {})));
        res.body.once('error', () => resolve([]));
        res.body.once('close', () => resolve([]));
      });
      return { status: res.statusCode, headers: fromHeaderObject(res.headers), body: res.body, trailers };
    } catch (e) {
      throw classify(e);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close().catch(() => undefined)));
    this.pools.clear();
  }
}

/**
 * An undici connector over a dialer. undici drives any duplex stream as its socket; it
 * only asks sockets for `ref`/`unref` when they have them.
 */
function dialConnector(dial: Dialer, timeoutMs: number): buildConnector.connector {
  return (_opts, callback) => {
    // Typed as a Socket by undici; it uses only the stream side (and ref/unref if present).
    dial.open(timeoutMs).then((s: Duplex) => callback(null, s as Socket), (e: Error) => callback(e, null));
  };
}

function classify(e: unknown): UpstreamError {
  if (e instanceof UpstreamError) return e;
  if (e instanceof DialError) return new UpstreamError(e.kind, e.message, { cause: e });
  const err = e as { code?: string; message?: string };
  const msg = err.message ?? String(e);
  if (e instanceof undiciErrors.ConnectTimeoutError || err.code === 'UND_ERR_CONNECT_TIMEOUT') return new UpstreamError('connect-timeout', msg, { cause: e });
  if (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' || err.code === 'ENOTFOUND') {
    return new UpstreamError('connect-failure', msg, { cause: e });
  }
  if (err.code === 'UND_ERR_HEADERS_TIMEOUT' || err.code === 'UND_ERR_BODY_TIMEOUT') return new UpstreamError('timeout', msg, { cause: e });
  if (err.code === 'UND_ERR_SOCKET' || err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'UND_ERR_CLOSED') return new UpstreamError('reset', msg, { cause: e });
  if (err.code === 'UND_ERR_ABORTED' || (e as Error).name === 'AbortError') return new UpstreamError('reset', `aborted: ${msg}`, { cause: e });
  return new UpstreamError('protocol-error', msg, { cause: e });
}
