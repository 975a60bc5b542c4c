/**
 * The `ambit:filter@0.2.0` world as a host sees it in JavaScript (records are camelCase
 * objects, variants are `{ tag, val }`, `option<T>` is `T | undefined | null`, flags are
 * objects of booleans, resources are objects whose methods the guest calls).
 *
 * Two layers:
 * - the component's own interface ({@link ComponentHandler}): phases take borrowed
 *   resources ({@link ContextResource}, {@link RequestHeadResource},
 *   {@link ResponseHeadResource}) and return actions without header changes, which
 *   the guest made by calls on the heads;
 * - the host's data view ({@link Handler}): plain heads in, and for a phase that goes on,
 *   the header operations the filter made ({@link HeaderOp}), which the proxy applies.
 *   A host adapts one to the other (`@ambit/filter-sdk/host`, `bindComponent`).
 *
 * Keep in step with `sdk/wit/filter.wit`.
 */

export const WIT_PACKAGE = 'ambit:filter@0.2.0';
/** The world version a host accepts: any `0.2.x`. */
export const WORLD_VERSION = '0.2';
/** Interface names as they appear in a component's imports and exports. */
export const HOST_INTERFACE = 'ambit:filter/host';
export const TYPES_INTERFACE = 'ambit:filter/types';
export const HANDLER_INTERFACE = 'ambit:filter/handler';

export type Direction = 'inbound' | 'outbound';

export interface Peer {
  identity?: string | null;
  workload?: string | null;
  namespace?: string | null;
  address: string;
  port: number;
}

export interface TlsInfo {
  version: string;
  cipher: string;
  sni?: string | null;
}

/** What the host knows about a request (or a connection), the data behind the `context` resource. */
export interface Context {
  direction: Direction;
  source: Peer;
  destination: Peer;
  service?: string | null;
  route?: string | null;
  requestId: string;
  attempt: number;
  /** The TLS session the connection arrived on, for `context.tls()` in the request and response phases. */
  tls?: TlsInfo | null;
}

export interface Connection {
  context: Context;
  tls?: TlsInfo | null;
}

/** Lower-case name, value. Repeated headers are repeated entries. */
export type Header = [name: string, value: string];
export type Headers = Header[];

export interface RequestHead {
  method: string;
  scheme: string;
  authority: string;
  path: string;
  headers: Headers;
}

export interface ResponseHead {
  status: number;
  headers: Headers;
}

export type HeaderOp =
  | { tag: 'set'; val: Header }
  | { tag: 'append'; val: Header }
  | { tag: 'remove'; val: string };

export interface LocalResponse {
  status: number;
  headers: Headers;
  body: string;
}

export interface RetryRequest {
  delayMs: number;
  reason: string;
}

export type ConnectionAction = { tag: 'allow' } | { tag: 'deny'; val: string };

/** A request phase's result as the host passes it on: `proceed` carries the header changes the filter made. */
export type RequestAction =
  | { tag: 'proceed'; val: HeaderOp[] }
  | { tag: 'respond'; val: LocalResponse };

/** A response phase's result as the host passes it on: `proceed` carries the header changes the filter made. */
export type ResponseAction =
  | { tag: 'proceed'; val: HeaderOp[] }
  | { tag: 'respond'; val: LocalResponse }
  | { tag: 'retry'; val: RetryRequest };

export interface Phases {
  connection: boolean;
  requestHeaders: boolean;
  responseHeaders: boolean;
  requestBody: boolean;
  responseBody: boolean;
}

export type PhaseName = 'connection' | 'requestHeaders' | 'responseHeaders';
export const PHASE_NAMES: readonly PhaseName[] = ['connection', 'requestHeaders', 'responseHeaders'];

export interface FilterInfo {
  name: string;
  phases: Phases;
}

export type ConfigureResult = { tag: 'ok'; val: FilterInfo } | { tag: 'invalid'; val: string };

/**
 * A configured filter instance as a host calls it: plain heads in; for a phase that goes
 * on, the header operations the filter made. A request phase does not change
 * `request` itself: the caller applies the operations (`applyRequestOps`), as the proxy
 * does, so the next filter sees them.
 */
export interface Handler {
  configure(config: string): ConfigureResult;
  onConnection(conn: Connection): ConnectionAction;
  onRequestHeaders(ctx: Context, request: RequestHead): RequestAction;
  onResponseHeaders(ctx: Context, request: RequestHead, response: ResponseHead): ResponseAction;
}

/** `context`: the facts of the traffic, read on demand. */
export interface ContextResource {
  direction(): Direction;
  source(): Peer;
  destination(): Peer;
  /** Names the source peer for the instance's life; 0: do not keep. */
  sourceKey(): number;
  destinationKey(): number;
  service(): string | undefined;
  route(): string | undefined;
  requestId(): string;
  attempt(): number;
  tls(): TlsInfo | undefined;
}

/** The header calls both heads answer. Names are case-insensitive; reads return them lower-case. */
export interface HeadResource {
  get(name: string): string | undefined;
  getAll(name: string): string[];
  has(name: string): boolean;
  set(name: string, value: string): void;
  append(name: string, value: string): void;
  remove(name: string): void;
  size(): number;
  entries(): Headers;
}

/** `request-head`: writable in the request phase; read-only (writes trap) in the response phase. */
export interface RequestHeadResource extends HeadResource {
  method(): string;
  scheme(): string;
  authority(): string;
  path(): string;
  setMethod(value: string): void;
  setAuthority(value: string): void;
  setPath(value: string): void;
}

/** `response-head`. */
export interface ResponseHeadResource extends HeadResource {
  status(): number;
  setStatus(status: number): void;
}

/** `request-action` of the world: header changes were made on the head, not returned. */
export type ComponentRequestAction = { tag: 'proceed' } | { tag: 'respond'; val: LocalResponse };
/** `response-action` of the world. */
export type ComponentResponseAction = { tag: 'proceed' } | { tag: 'respond'; val: LocalResponse } | { tag: 'retry'; val: RetryRequest };

/** The `handler` interface a filter component exports, with its borrowed resources. */
export interface ComponentHandler {
  configure(config: string): ConfigureResult;
  onConnection(ctx: ContextResource): ConnectionAction;
  onRequestHeaders(ctx: ContextResource, request: RequestHeadResource): ComponentRequestAction;
  onResponseHeaders(ctx: ContextResource, request: RequestHeadResource, response: ResponseHeadResource): ComponentResponseAction;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** `shared-entry`: a value of the shared table and its version (never 0). */
export interface SharedEntry {
  value: string;
  version: number;
}

/** `service-load`: requests (and retries) in flight to the destination service. */
export interface ServiceLoad {
  activeRequests: number;
  activeRetries: number;
}

/** The `host` interface a filter component imports. */
export interface HostImports {
  log(level: LogLevel, message: string): void;
  counterAdd(name: string, delta: number): void;
  now(): number;
  monotonic(): number;
  random(): number;
  sharedGet(key: string): SharedEntry | undefined;
  sharedSet(key: string, value: string, version: number): boolean;
  sharedAdd(key: string, delta: number): number;
  delayRequest(ms: number): void;
  routeToSubset(subset: string): void;
  setPerTryTimeout(ms: number): void;
  upstreamError(): string | undefined;
  upstreamLoad(): ServiceLoad;
  reportError(message: string): void;
}

/** Host functions, as named in the WIT world (kebab-case) → as named in `HostImports`. */
export const HOST_FUNCTIONS = [
  'log', 'counterAdd', 'now', 'monotonic', 'random', 'sharedGet', 'sharedSet', 'sharedAdd',
  'delayRequest', 'routeToSubset', 'setPerTryTimeout', 'upstreamError', 'upstreamLoad', 'reportError',
] as const satisfies ReadonlyArray<keyof HostImports>;

/**
 * What the request phase asked of the host besides header changes (`delay-request`,
 * `route-to-subset`, `set-per-try-timeout`), combined over a chain.
 */
export interface RequestDirectives {
  /** Total delay before the request goes upstream. */
  delayMs?: number;
  /** Subset of the destination service to send the request to. */
  subset?: string;
  /** Per-attempt timeout until response headers (0: none). */
  perTryTimeoutMs?: number;
}

/** Facts of the current attempt the host offers the response phase (and `upstream-load` any phase). */
export interface AttemptFacts {
  /** Why there is no upstream response (a local 503/504 stands in), if so. */
  upstreamError?: string;
  load?: ServiceLoad;
}

/** Capabilities a filter package may declare; each unlocks part of `host`. */
export type Capability = 'log' | 'counters' | 'clock' | 'random' | 'shared' | 'traffic';
export const CAPABILITIES: readonly Capability[] = ['log', 'counters', 'clock', 'random', 'shared', 'traffic'];
