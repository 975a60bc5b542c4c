import type { ConnectionInfo, FilterContext, HttpRequest, HttpResponse, Peer, ReadonlyRequest, ResponseContext, TlsInfo } from './public-types.js';
import type { Direction } from '../abi/types.js';
import { HeaderMap } from './headers.js';
import { natives, type Natives, type PeerTuple } from './natives.js';

function toPeer(p: PeerTuple): Peer {
  return { identity: p[0], workload: p[1], namespace: p[2], address: p[3], port: p[4] };
}

/**
 * What a phase knows, read from the host the first time a field is used and kept for
 * the call. Fields are own enumerable properties, so `{ ...ctx }` and `JSON.stringify`
 * see them.
 */
export function contextView<C>(n: Natives, h: number, config: C): FilterContext<C> {
  const ctx = { config } as FilterContext<C>;
  lazy(ctx, 'direction', (): Direction => (n.ctxDirection(h) === 0 ? 'inbound' : 'outbound'));
  lazy(ctx, 'source', () => toPeer(n.ctxSource(h)));
  lazy(ctx, 'destination', () => toPeer(n.ctxDestination(h)));
  lazy(ctx, 'service', () => n.ctxService(h));
  lazy(ctx, 'route', () => n.ctxRoute(h));
  lazy(ctx, 'requestId', () => n.ctxRequestId(h));
  lazy(ctx, 'attempt', () => n.ctxAttempt(h));
  return ctx;
}

export function responseContextView<C>(n: Natives, h: number, req: number, config: C): ResponseContext<C> {
  const ctx = contextView(n, h, config) as ResponseContext<C>;
  lazy(ctx, 'request', () => new ForwardedRequest(n, req));
  // Asked of the host only when read.
  lazy(ctx, 'upstreamError', () => n.upstreamError());
  return ctx;
}

export function connectionView(n: Natives, h: number): ConnectionInfo {
  const conn = {} as ConnectionInfo;
  lazy(conn, 'tls', (): TlsInfo | undefined => {
    const t = n.ctxTls(h);
    return t ? { version: t[0], cipher: t[1], sni: t[2] } : undefined;
  });
  return conn;
}

/** Defines `key` as a getter that asks once, then keeps the answer as a plain value. */
function lazy<T extends object, K extends keyof T>(obj: T, key: K, read: () => T[K]): void {
  Object.defineProperty(obj, key, {
    enumerable: true,
    configurable: true,
    get() {
      const value = read();
      Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
      return value;
    },
  });
}

/** The request about to be forwarded: reads ask the host, assignments change it there. */
export class RequestView implements HttpRequest {
  readonly #n: Natives;
  readonly #h: number;
  #headers: HeaderMap | undefined;

  constructor(n: Natives, h: number) {
    this.#n = n;
    this.#h = h;
  }
  get headers(): HeaderMap { return (this.#headers ??= new HeaderMap('request', this.#h)); }
  get method(): string { return this.#n.reqMethod(this.#h); }
  set method(v: string) { this.#n.reqSetMethod(this.#h, String(v)); }
  get path(): string { return this.#n.reqPath(this.#h); }
  set path(v: string) { this.#n.reqSetPath(this.#h, String(v)); }
  get authority(): string { return this.#n.reqAuthority(this.#h); }
  set authority(v: string) { this.#n.reqSetAuthority(this.#h, String(v)); }
  get scheme(): string { return this.#n.reqScheme(this.#h); }
}

/** The request as it was forwarded, seen from the response phase: read-only. */
class ForwardedRequest implements ReadonlyRequest {
  readonly #n: Natives;
  readonly #h: number;
  #headers: HeaderMap | undefined;

  constructor(n: Natives, h: number) {
    this.#n = n;
    this.#h = h;
  }
  get headers(): HeaderMap { return (this.#headers ??= new HeaderMap('forwarded', this.#h)); }
  get method(): string { return this.#n.reqMethod(this.#h); }
  get path(): string { return this.#n.reqPath(this.#h); }
  get authority(): string { return this.#n.reqAuthority(this.#h); }
  get scheme(): string { return this.#n.reqScheme(this.#h); }
}

/** The response: reads ask the host, changes are made there. */
export class ResponseView implements HttpResponse {
  readonly #n: Natives;
  readonly #h: number;
  #headers: HeaderMap | undefined;

  constructor(n: Natives, h: number) {
    this.#n = n;
    this.#h = h;
  }
  get headers(): HeaderMap { return (this.#headers ??= new HeaderMap('response', this.#h)); }
  get status(): number { return this.#n.resStatus(this.#h); }
  set status(v: number) {
    const s = Number(v);
    if (!Number.isInteger(s) || s < 100 || s > 599) throw new RangeError(`status must be an integer from 100 to 599, got ${String(v)}`);
    this.#n.resSetStatus(this.#h, s);
  }
}

export { natives };
