/**
 * What the data path needs from the mesh config, as one immutable snapshot. A reload
 * builds a new snapshot and swaps it in; requests already running keep the one they
 * started with (and its filter chains, which close only once those requests are done).
 */
import type { Direction } from '../deps.js';
import type { FilterChain } from '../filters/engine.js';
import type { Balancer } from '../upstream/balancer.js';
import type { Endpoint, OutlierPolicy } from '../upstream/endpoint.js';

export interface WorkloadInfo {
  name: string;
  namespace: string;
  serviceAccount: string;
  address: string;
  /** `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceAccount>` */
  identity: string;
  /** Runs on this node (undefined: not known, treated as local). */
  local?: boolean;
}

/** Another node's HBONE listener, where traffic to its workloads is tunnelled. */
export interface TunnelNode {
  name: string;
  address: string;
  port: number;
}

export type PortProtocol = 'auto' | 'http' | 'http2' | 'tcp';

/** Where traffic to one destination address:port goes, and what runs on it. */
export interface Route {
  /** Route name shown to filters (`ctx.route`) and in logs. */
  name: string;
  /** `name.namespace` of the destination service, if it is one. */
  service?: string;
  /** The destination workload, when addressed directly (or on inbound). */
  workload?: WorkloadInfo;
  endpoints: Endpoint[];
  balancer: Balancer;
  outlier: OutlierPolicy;
  protocol: PortProtocol;
  connectTimeoutMs: number;
  /** Per-try timeout for HTTP requests; 0: none. */
  requestTimeoutMs: number;
  /** Filters bound to this destination in this direction. */
  chain?: FilterChain;
  /** HTTP is parsed: the chain has request or response phases, or the port is declared `http`/`http2`. */
  l7: boolean;
  /** The chain has a connection phase. */
  connectionPhase: boolean;
  /**
   * What the chain enforces (its filters, packages and configs), to tell after a reload
   * whether an open connection was admitted under the same policy.
   */
  policyKey?: string;
  /**
   * Named subsets of the service's endpoints (`services[].subsets`: a name and workload
   * labels, like an Istio DestinationRule), for filters that route to one.
   */
  subsets?: ReadonlyMap<string, Endpoint[]>;
  /** Requests in flight to the service through this proxy, and how many are retries (shared by its routes). */
  load?: ServiceLoadCounter;
}

/**
 * Live counts behind a filter's `upstream-load` (retry budgets), in shared memory so
 * filter threads read them as they are when the filter asks: `[0]` requests in flight,
 * `[1]` of those on a retry. The proxy counts requests; the filter worker counts a
 * request as retrying the moment a filter decides its first retry (so decisions taken
 * in a burst see each other).
 */
export type ServiceLoadCounter = Int32Array;

export function newServiceLoad(): ServiceLoadCounter {
  return new Int32Array(new SharedArrayBuffer(8));
}

export interface ProxyLimits {
  maxHeaderBytes: number;
  /** Time a client has to send complete request headers. */
  headersTimeoutMs: number;
  /** Time a client has to send a complete request (0: none). */
  requestTimeoutMs: number;
  /** Idle keep-alive connections are closed after this. */
  idleTimeoutMs: number;
  /** Request bodies up to this size are buffered so the request can be retried. */
  retryBufferBytes: number;
  /** Most attempts a request gets, whatever filters ask. */
  maxAttempts: number;
  /** Time to tell HTTP from other protocols on an L7-bound destination. */
  sniffTimeoutMs: number;
}

export const DEFAULT_LIMITS: ProxyLimits = {
  maxHeaderBytes: 64 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 0,
  idleTimeoutMs: 60_000,
  retryBufferBytes: 64 * 1024,
  maxAttempts: 5,
  sniffTimeoutMs: 5_000,
};

export interface ProxyState {
  readonly version: number;
  readonly trustDomain: string;
  readonly limits: ProxyLimits;
  /** The route for traffic to `address:port` seen from `direction`; undefined: not meshed (passthrough). */
  route(direction: Direction, address: string, port: number): Route | undefined;
  /**
   * HTTP only: the route for a request whose Host/:authority names a mesh service
   * (`name.namespace[.svc…][:port]`), like Istio's virtual hosts. Undefined: use the
   * connection's destination.
   */
  routeByHost?(direction: Direction, authority: string, defaultPort: number): Route | undefined;
  workloadByAddress(address: string): WorkloadInfo | undefined;
  /**
   * The node a workload address runs on, when it is another node listed with its HBONE
   * address: traffic to it goes through an mTLS tunnel. Undefined: local, unknown or
   * unreachable by HBONE (sent directly).
   */
  tunnelNode?(address: string): TunnelNode | undefined;
  /**
   * Marks a request or connection as using this snapshot until the returned function is
   * called: `close()` waits for them, so a request that started on a snapshot finishes
   * on its chains even when a reload swaps in another mid-request.
   */
  retain(): () => void;
  /** Releases what the snapshot holds (filter chains) once everything retained is released, or after `drainMs`. */
  close(drainMs?: number): Promise<void>;
}

/** Counts users of a snapshot; `drained` resolves when none are left. */
export class RetainCount {
  private n = 0;
  private waiters: Array<() => void> = [];

  retain(): () => void {
    this.n++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.n === 0) for (const w of this.waiters.splice(0)) w();
    };
  }

  /** Resolves when nothing is retained, or after `timeoutMs`. */
  drained(timeoutMs: number): Promise<void> {
    if (this.n === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      t.unref();
      this.waiters.push(() => { clearTimeout(t); resolve(); });
    });
  }
}
