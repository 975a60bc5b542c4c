import type { ConnectionInfo, FilterContext, HttpRequest, HttpResponse, Peer, ReadonlyRequest, ResponseContext, TlsInfo } from './public-types.js';
import type { Direction } from '../abi/types.js';
import { HeaderMap } from './headers.js';
import type { Natives, PeerTuple } from './natives.js';

/*
 * The views a handler gets. They are made on every call, so they are cheap to make:
 * one or two properties each (the resource handle under a symbol, so it stays out of
 * `Object.keys` and `JSON.stringify`), and every field is asked of the host the first
 * time it is read, then kept for the call.
 */

/** The lent resource's handle. */
const H = Symbol('ambit.handle');
/** The forwarded request's handle (response phase). */
const REQ = Symbol('ambit.request');

let n: Natives;

/** @internal Binds the views to the engine's natives (once, when the filter is installed). */
export function useNatives(natives_: Natives): void {
  n = natives_;
}

function toPeer(p: PeerTuple): Peer {
  return { identity: p[0], workload: p[1], namespace: p[2], address: p[3], port: p[4] };
}

/** Reads `key` once from the host and keeps it on the instance as an own property. */
function keep<T>(self: object, key: string, value: T): T {
  Object.defineProperty(self, key, { value, enumerable: true, writable: true, configurable: true });
  return value;
}

class ContextView<C> implements FilterContext<C> {
  declare [H]: number;
  constructor(h: number, readonly config: C) {
    this[H] = h;
  }
  get direction(): Direction { return keep(this, 'direction', n.ctxDirection(this[H]) === 0 ? 'inbound' : 'outbound'); }
  get source(): Peer { return keep(this, 'source', toPeer(n.ctxSource(this[H]))); }
  get destination(): Peer { return keep(this, 'destination', toPeer(n.ctxDestination(this[H]))); }
  get service(): string | undefined { return keep(this, 'service', n.ctxService(this[H])); }
  get route(): string | undefined { return keep(this, 'route', n.ctxRoute(this[H])); }
  get requestId(): string { return keep(this, 'requestId', n.ctxRequestId(this[H])); }
  get attempt(): number { return keep(this, 'attempt', n.ctxAttempt(this[H])); }
  /** Every field (what `JSON.stringify(ctx)` shows). */
  toJSON(): FilterContext<C> {
    const { direction, source, destination, service, route, requestId, attempt, config } = this;
    return { direction, source, destination, service, route, requestId, attempt, config };
  }
}

class ResponseContextView<C> extends ContextView<C> implements ResponseContext<C> {
  declare [REQ]: number;
  constructor(h: number, req: number, config: C) {
    super(h, config);
    this[REQ] = req;
  }
  get request(): ReadonlyRequest { return keep(this, 'request', new ForwardedRequest(this[REQ])); }
  /** Asked of the host only when read. */
  get upstreamError(): string | undefined { return keep(this, 'upstreamError', n.upstreamError()); }
}

export function contextView<C>(h: number, config: C): FilterContext<C> {
  return new ContextView(h, config);
}

export function responseContextView<C>(h: number, req: number, config: C): ResponseContext<C> {
  return new ResponseContextView(h, req, config);
}

class ConnectionView implements ConnectionInfo {
  declare [H]: number;
  constructor(h: number) {
    this[H] = h;
  }
  get tls(): TlsInfo | undefined {
    const t = n.ctxTls(this[H]);
    return keep(this, 'tls', t ? { version: t[0], cipher: t[1], sni: t[2] } : undefined);
  }
}

export function connectionView(h: number): ConnectionInfo {
  return new ConnectionView(h);
}

/** The request about to be forwarded: reads ask the host, assignments change it there. */
export class RequestView implements HttpRequest {
  declare [H]: number;
  constructor(h: number) {
    this[H] = h;
  }
  get headers(): HeaderMap { return keep(this, 'headers', new HeaderMap('request', this[H])); }
  get method(): string { return n.reqMethod(this[H]); }
  set method(v: string) { n.reqSetMethod(this[H], String(v)); }
  get path(): string { return n.reqPath(this[H]); }
  set path(v: string) { n.reqSetPath(this[H], String(v)); }
  get authority(): string { return n.reqAuthority(this[H]); }
  set authority(v: string) { n.reqSetAuthority(this[H], String(v)); }
  get scheme(): string { return n.reqScheme(this[H]); }
}

/** The request as it was forwarded, seen from the response phase: read-only. */
class ForwardedRequest implements ReadonlyRequest {
  declare [H]: number;
  constructor(h: number) {
    this[H] = h;
  }
  get headers(): HeaderMap { return keep(this, 'headers', new HeaderMap('forwarded', this[H])); }
  get method(): string { return keep(this, 'method', n.reqMethod(this[H])); }
  get path(): string { return keep(this, 'path', n.reqPath(this[H])); }
  get authority(): string { return keep(this, 'authority', n.reqAuthority(this[H])); }
  get scheme(): string { return keep(this, 'scheme', n.reqScheme(this[H])); }
}

/** The response: reads ask the host, changes are made there. */
export class ResponseView implements HttpResponse {
  declare [H]: number;
  constructor(h: number) {
    this[H] = h;
  }
  get headers(): HeaderMap { return keep(this, 'headers', new HeaderMap('response', this[H])); }
  get status(): number { return n.resStatus(this[H]); }
  set status(v: number) {
    const s = Number(v);
    if (!Number.isInteger(s) || s < 100 || s > 599) throw new RangeError(`status must be an integer from 100 to 599, got ${String(v)}`);
    n.resSetStatus(this[H], s);
  }
}

