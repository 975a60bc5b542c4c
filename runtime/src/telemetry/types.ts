/**
 * What the data path reports. The proxy core calls these; `telemetry/` turns them into
 * the access log (pino, one JSON line per request or connection) and Prometheus
 * metrics. Keep calls cheap: they run once per request.
 */
import type { Direction } from '../deps.js';
import type { PhaseInput, PhaseOutcome } from '../filters/engine.js';

export interface PeerRecord {
  address: string;
  port: number;
  workload?: string;
  namespace?: string;
  /** SPIFFE ID when known. */
  identity?: string;
}

export interface RequestRecord {
  direction: Direction;
  /** `http/1.1`, `h2`, or `grpc` (h2 with content-type application/grpc). */
  protocol: string;
  method: string;
  authority: string;
  path: string;
  /** Status sent to the client (0 when the client went away before any). */
  status: number;
  /** gRPC status from the trailers, when there is one. */
  grpcStatus?: string;
  durationMs: number;
  requestId: string;
  source: PeerRecord;
  destination: PeerRecord;
  /** `name.namespace` of the destination service. */
  service?: string;
  /** The endpoint that answered the last attempt. */
  upstream?: { address: string; port: number };
  attempts: number;
  /** Request body bytes (Envoy's bytes_received). */
  bytesReceived: number;
  /** Response body bytes sent to the client (Envoy's bytes_sent). */
  bytesSent: number;
  /** Set when a filter answered locally or the host did (`ambit` as filter name). */
  localReply?: { filter: string; reason: string };
  /** Upstream failure of the last attempt: connect-failure, reset, timeout, … */
  upstreamError?: string;
  userAgent?: string;
}

export interface ConnectionRecord {
  direction: Direction;
  /** `l4` when bytes were spliced, `l7` when HTTP was parsed. */
  mode: 'l4' | 'l7';
  source: PeerRecord;
  destination: PeerRecord;
  service?: string;
  upstream?: { address: string; port: number };
  bytesReceived: number;
  bytesSent: number;
  durationMs: number;
  /** A connection-phase filter closed the connection. */
  denied?: { filter: string; reason: string };
  error?: string;
}

/** A duration histogram counted elsewhere: observations per bucket (not cumulative; the last is +Inf) and their sum, in seconds. */
export interface HistogramCounts {
  counts: number[];
  sum: number;
}

/** Requests of one label set, counted by a data path that keeps its own cells (the native one). */
export interface RequestCell {
  labels: Pick<RequestRecord, 'direction' | 'protocol' | 'status' | 'grpcStatus' | 'service'> & {
    source: Pick<PeerRecord, 'workload' | 'namespace'>;
    destination: Pick<PeerRecord, 'workload' | 'namespace'>;
    localReply?: { filter: string };
  };
  count: number;
  requestBytes: number;
  responseBytes: number;
  /** On the bounds of `REQUEST_DURATION_BUCKETS`. */
  duration: HistogramCounts;
}

/** One filter's calls in one phase, counted the same way. */
export interface FilterCell {
  phase: PhaseInput['phase'];
  filter: string;
  ok: number;
  trap: number;
  deadline: number;
  unavailable: number;
  /** On the bounds of `FILTER_DURATION_BUCKETS`. */
  duration: HistogramCounts;
}

export interface Telemetry {
  /** Whether every request record is wanted (an access log is on); when not, a data path that counts its own cells hands over only those. */
  readonly logsRequests: boolean;
  request(r: RequestRecord): void;
  /** Requests counted elsewhere, added to the request metrics. */
  requestCell(c: RequestCell): void;
  /** Filter calls counted elsewhere, added to the filter metrics. */
  filterCell(c: FilterCell): void;
  connection(r: ConnectionRecord): void;
  /** Per-filter call counts, durations and failures of one phase run. */
  filterPhase(phase: PhaseInput['phase'], outcome: PhaseOutcome): void;
  /** A filter's `counter(name, delta)` host call. */
  filterCounter(filter: string, name: string, delta: number): void;
  /** A filter's log line. */
  filterLog(filter: string, level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string): void;
  /** Operational messages of the proxy itself (reloads, errors). */
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}
