import type { ConnectionInfo, FilterContext, HttpRequest, HttpResponse, Peer, ReadonlyRequest, ResponseContext, TlsInfo } from './public-types.js';
import type { Direction } from '../abi/types.js';
import { HeaderMap } from './headers.js';
import type { Natives, PeerTuple } from './natives.js';

/*
 * The views a handler gets. They are made on every call, so they are cheap to make:
 * a few properties each, under symbols (out of `Object.keys` and `JSON.stringify`):
 * the resource handle and slots for what is kept. Every field is asked of the host
 * when it is read (one call, no copy of the head); the peers (five fields in one call)
 * and the header maps are kept for the call; peers also across calls, by their key.
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
  return Object.freeze({ identity: p[0], workload: p[1], namespace: p[2], address: p[3], port: p[4] });
}

/**
 * Peers read so far, by the key the host gave them (`context.source-key`): a client or
 * server seen before costs one host call returning a number. The records are frozen, as
 * they are shared by the calls that see the same peer. Bounded: it starts over when full.
 */
const peers = new Map<number, Peer>();
const MAX_PEERS = 256;

/** The source (or destination) peer of the context `h`. */
function peerOf(h: number, source: boolean): Peer {
  const key = source ? n.ctxSourceKey(h) : n.ctxDestinationKey(h);
  if (key !== 0) {
    const known = peers.get(key);
    if (known !== undefined) return known;
  }
  const p = toPeer(source ? n.ctxSource(h) : n.ctxDestination(h));
  if (key !== 0) {
    if (peers.size >= MAX_PEERS) peers.clear();
    peers.set(key, p);
  }
  return p;
}

/*
 * What a view read from the host is kept under a symbol (out of `Object.keys`) with a
 * plain property write, only when it is read: a view starts with its handle alone.
 */

const SOURCE = Symbol('ambit.source');
const DESTINATION = Symbol('ambit.destination');

class ContextView<C> implements FilterContext<C> {
  declare [H]: number;
  declare [SOURCE]: Peer | undefined;
  declare [DESTINATION]: Peer | undefined;
  declare readonly config: C;
  constructor(h: number, config: C) {
    this[H] = h;
    (this as { config: C }).config = config;
  }
  get direction(): Direction { return n.ctxDirection(this[H]) === 0 ? 'inbound' : 'outbound'; }
  get source(): Peer { return (this[SOURCE] ??= peerOf(this[H], true)); }
  get destination(): Peer { return (this[DESTINATION] ??= peerOf(this[H], false)); }
  get service(): string | undefined { return n.ctxService(this[H]); }
  get route(): string | undefined { return n.ctxRoute(this[H]); }
  get requestId(): string { return n.ctxRequestId(this[H]); }
  get attempt(): number { return n.ctxAttempt(this[H]); }
  /** Every field (what `JSON.stringify(ctx)` shows). */
  toJSON(): FilterContext<C> {
    const { direction, source, destination, service, route, requestId, attempt, config } = this;
    return { direction, source, destination, service, route, requestId, attempt, config };
  }
}

const REQUEST = Symbol('ambit.forwarded');

class ResponseContextView<C> extends ContextView<C> implements ResponseContext<C> {
  declare [REQ]: number;
  declare [REQUEST]: ForwardedRequest | undefined;
  constructor(h: number, req: number, config: C) {
    super(h, config);
    this[REQ] = req;
  }
  get request(): ReadonlyRequest { return (this[REQUEST] ??= new ForwardedRequest(this[REQ])); }
  /** Asked of the host only when read. */
  get upstreamError(): string | undefined { return n.upstreamError(); }
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
    return t ? { version: t[0], cipher: t[1], sni: t[2] } : undefined;
  }
}

export function connectionView(h: number): ConnectionInfo {
  return new ConnectionView(h);
}

/** The request about to be forwarded: reads ask the host, assignments change it there. */
const HEADERS = Symbol('ambit.headers');

export class RequestView implements HttpRequest {
  declare [H]: number;
  declare [HEADERS]: HeaderMap | undefined;
  constructor(h: number) {
    this[H] = h;
  }
  get headers(): HeaderMap { return (this[HEADERS] ??= new HeaderMap('request', this[H])); }
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
  declare [HEADERS]: HeaderMap | undefined;
  constructor(h: number) {
    this[H] = h;
  }
  get headers(): HeaderMap { return (this[HEADERS] ??= new HeaderMap('forwarded', this[H])); }
  get method(): string { return n.reqMethod(this[H]); }
  get path(): string { return n.reqPath(this[H]); }
  get authority(): string { return n.reqAuthority(this[H]); }
  get scheme(): string { return n.reqScheme(this[H]); }
}

/** The response: reads ask the host, changes are made there. */
export class ResponseView implements HttpResponse {
  declare [H]: number;
  declare [HEADERS]: HeaderMap | undefined;
  constructor(h: number) {
    this[H] = h;
  }
  get headers(): HeaderMap { return (this[HEADERS] ??= new HeaderMap('response', this[H])); }
  get status(): number { return n.resStatus(this[H]); }
  set status(v: number) {
    const s = Number(v);
    if (!Number.isInteger(s) || s < 100 || s > 599) throw new RangeError(`status must be an integer from 100 to 599, got ${String(v)}`);
    n.resSetStatus(this[H], s);
  }
}

