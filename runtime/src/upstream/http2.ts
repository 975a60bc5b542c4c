/**
 * HTTP/2 to upstreams (cleartext, prior knowledge — as gRPC servers speak it): one
 * multiplexed session per endpoint, re-established when it closes or sends GOAWAY.
 */
import http2, { type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { DialError, type Dialer } from './dialer.js';
import { endpointKey } from './endpoint.js';
import { fromHeaderObject } from '../proxy/headers.js';
import { UpstreamError, type UpstreamClient, type UpstreamRequest, type UpstreamResponse } from './types.js';
import type { Headers } from '../deps.js';

export class Http2Client implements UpstreamClient {
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();

  private session(address: string, port: number, connectTimeoutMs: number, dial: Dialer | undefined): Promise<ClientHttp2Session> {
    const key = dial ? `${endpointKey(address, port)}/${dial.key}` : endpointKey(address, port);
    const existing = this.sessions.get(key);
    if (existing) return existing;
    const p = (dial ? dial.open(connectTimeoutMs) : Promise.resolve(undefined)).then((tunnel) => new Promise<ClientHttp2Session>((resolve, reject) => {
      const host = address.includes(':') ? `[${address}]` : address;
      const s = tunnel ? http2.connect(`http://${host}:${port}`, { createConnection: () => tunnel }) : http2.connect(`http://${host}:${port}`);
      const timer = connectTimeoutMs > 0
        ? setTimeout(() => {
          s.destroy();
          reject(new UpstreamError('connect-timeout', `connect to ${key} timed out after ${connectTimeoutMs} ms`));
        }, connectTimeoutMs)
        : undefined;
      const forget = () => { if (this.sessions.get(key) === p) this.sessions.delete(key); };
      s.once('connect', () => { if (timer) clearTimeout(timer); resolve(s); });
      s.once('error', (e: NodeJS.ErrnoException) => {
        if (timer) clearTimeout(timer);
        forget();
        reject(new UpstreamError(e.code === 'ECONNREFUSED' ? 'connect-failure' : 'reset', `${key}: ${e.message}`, { cause: e }));
      });
      s.once('goaway', forget);
      s.once('close', forget);
      s.setTimeout(60_000, () => s.close());
    }), (e: unknown) => {
      if (this.sessions.get(key) === p) this.sessions.delete(key);
      throw e instanceof DialError ? new UpstreamError(e.kind, e.message, { cause: e }) : e;
    });
    p.catch(() => undefined);
    this.sessions.set(key, p);
    return p;
  }

  async send(address: string, port: number, req: UpstreamRequest): Promise<UpstreamResponse> {
    const session = await this.session(address, port, req.connectTimeoutMs, req.dial);
    const headers: Record<string, string | string[]> = {
      ':method': req.method, ':path': req.path, ':authority': req.authority, ':scheme': req.scheme,
    };
    for (const [k, v] of req.headers) {
      const prev = headers[k];
      headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    if (headers['content-type']?.toString().startsWith('application/grpc')) headers.te = 'trailers';
    const body = req.body;
    const stream = session.request(headers, { endStream: body === null, signal: req.signal });
    if (Buffer.isBuffer(body)) stream.end(body);
    else if (body) body.pipe(stream);
    let timer: NodeJS.Timeout | undefined;
    if (req.timeoutMs > 0) {
      stream.setTimeout(req.timeoutMs, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    }
    return new Promise<UpstreamResponse>((resolve, reject) => {
      let responded = false;
      stream.once('response', (h: IncomingHttpHeaders) => {
        responded = true;
        if (timer) clearTimeout(timer);
        const trailers = new Promise<Headers>((done) => {
          let t: Headers = [];
          stream.once('trailers', (th: IncomingHttpHeaders) => { t = fromHeaderObject(th); });
          stream.once('end', () => done(t));
          stream.once('close', () => done(t));
        });
        resolve({ status: Number(h[':status']), headers: fromHeaderObject(h), body: stream, trailers });
      });
      stream.once('error', (e: NodeJS.ErrnoException) => {
        if (!responded) reject(new UpstreamError('reset', `${endpointKey(address, port)}: ${e.message}`, { cause: e }));
      });
      stream.once('close', () => {
        if (!responded) {
          const code = stream.rstCode;
          reject(new UpstreamError(code === http2.constants.NGHTTP2_CANCEL ? 'timeout' : 'reset', `${endpointKey(address, port)}: stream closed before a response (code ${code})`));
        }
      });
    });
  }

  async close(): Promise<void> {
    const all = await Promise.allSettled([...this.sessions.values()]);
    for (const r of all) if (r.status === 'fulfilled') r.value.close();
    this.sessions.clear();
  }
}
