import type { HeaderMap } from './headers.js';
import type { Capability, Direction } from '../abi/types.js';

/** One end of the traffic, as the node proxy knows it. Read-only (the object is frozen). */
export interface Peer {
  /** SPIFFE ID proven by mTLS, e.g. `spiffe://cluster.local/ns/default/sa/web`; undefined when unauthenticated. */
  readonly identity: string | undefined;
  /** Workload name from the mesh config, when known. */
  readonly workload: string | undefined;
  readonly namespace: string | undefined;
  readonly address: string;
  readonly port: number;
}

export interface TlsInfo {
  /** e.g. `TLSv1.3` */
  version: string;
  cipher: string;
  sni: string | undefined;
}

/** What every phase knows, plus the binding's validated configuration. */
export interface FilterContext<C> {
  direction: Direction;
  source: Peer;
  destination: Peer;
  /** Mesh service the destination resolved to. */
  service: string | undefined;
  /** Route or binding name that selected this chain. */
  route: string | undefined;
  requestId: string;
  /** 1 on the first try, then 2, 3, … on retries. */
  attempt: number;
  /** The binding's configuration, validated against the filter's schema by the host. */
  config: C;
}

/** What the response phase knows besides the {@link FilterContext}. */
export interface ResponseContext<C> extends FilterContext<C> {
  /** The request as it was forwarded. */
  request: ReadonlyRequest;
  /**
   * Why the proxy got no upstream response for this attempt — `connect-failure`,
   * `connect-timeout`, `reset`, `timeout`, `protocol-error`, `no-healthy-upstream` —
   * or undefined when the response is the upstream's. (The response is then a local
   * 503, or 504 on timeout.) Only the proxy can say this: a header could be forged.
   */
  readonly upstreamError: string | undefined;
}

/** Connection-phase facts (L4): nothing of HTTP is known yet. */
export interface ConnectionInfo {
  /** Undefined for plaintext connections. */
  tls: TlsInfo | undefined;
}

/** The request as a filter sees it; assignments and header changes are forwarded. */
export interface HttpRequest {
  method: string;
  /** Path with query string. Assign to rewrite. */
  path: string;
  /** Host / :authority. Assign to rewrite. */
  authority: string;
  readonly scheme: string;
  readonly headers: HeaderMap;
}

/** The forwarded request, seen from the response phase. Changes to it go nowhere. */
export interface ReadonlyRequest {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly scheme: string;
  readonly headers: HeaderMap;
}

/** The upstream response as a filter sees it. */
export interface HttpResponse {
  /** Assign to change the status sent to the client. */
  status: number;
  readonly headers: HeaderMap;
}

/** A response the filter sends instead of forwarding. Build with {@link respond}. */
export interface Respond {
  readonly kind: 'respond';
  readonly status: number;
  readonly body: string;
  readonly headers: ReadonlyArray<readonly [string, string]>;
}

/** Close the connection. Build with {@link deny}. */
export interface Deny {
  readonly kind: 'deny';
  readonly reason: string;
}

/** Send the request again. Build with {@link retry}. */
export interface Retry {
  readonly kind: 'retry';
  readonly delayMs: number;
  readonly reason: string;
}

export type ConnectionVerdict = void | undefined | Deny;
export type RequestVerdict = void | undefined | Respond;
export type ResponseVerdict = void | undefined | Respond | Retry;

/**
 * A filter: a name, an optional configuration schema and one handler per phase it
 * takes part in. Omitted phases are never called.
 */
export interface FilterDefinition<C = unknown> {
  /** Shown in logs and metrics; defaults to the package name. */
  name?: string;
  /**
   * JSON Schema of the configuration (a TypeBox schema such as `Type.Object({...})`
   * gives the handlers a typed `ctx.config`). The build writes it to
   * `dist/schema.json`; the host validates every binding's config against it.
   */
  config?: unknown;
  /** Host capabilities the filter uses. Calls to undeclared ones trap. Default: `['log']`. */
  capabilities?: Capability[];
  /** Runs once per instance after the config is validated. Throw to reject the config. */
  setup?(config: C): void;
  /** L4: decide on a connection before any bytes are parsed. */
  onConnection?(conn: ConnectionInfo, ctx: FilterContext<C>): ConnectionVerdict;
  /** Request headers: change them, or answer locally with {@link respond}. */
  onRequest?(req: HttpRequest, ctx: FilterContext<C>): RequestVerdict;
  /** Response headers: change them, replace the response, or {@link retry}. */
  onResponse?(res: HttpResponse, ctx: ResponseContext<C>): ResponseVerdict;
}
