/**
 * The `ambit:filter@0.1.0` world as JavaScript values, the shapes both sides of a
 * component call see (records are camelCase objects, variants are `{ tag, val }`,
 * `option<T>` is `T | undefined | null`, flags are objects of booleans).
 *
 * Keep in step with `sdk/wit/filter.wit`.
 */

export const WIT_PACKAGE = 'ambit:filter@0.1.0';
/** Interface names as they appear in a component's imports and exports. */
export const HOST_INTERFACE = 'ambit:filter/host';
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

export interface Context {
  direction: Direction;
  source: Peer;
  destination: Peer;
  service?: string | null;
  route?: string | null;
  requestId: string;
  attempt: number;
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

export type RequestAction =
  | { tag: 'proceed'; val: HeaderOp[] }
  | { tag: 'respond'; val: LocalResponse };

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

/** The `handler` interface a filter component exports. */
export interface Handler {
  configure(config: string): ConfigureResult;
  onConnection(conn: Connection): ConnectionAction;
  onRequestHeaders(ctx: Context, request: RequestHead): RequestAction;
  onResponseHeaders(ctx: Context, request: RequestHead, response: ResponseHead): ResponseAction;
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
