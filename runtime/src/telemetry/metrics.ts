/**
 * Prometheus metrics of the data path, on a registry the caller owns (never prom-client's
 * global one). Names and labels follow Istio's standard metrics, with an `ambit_` prefix.
 *
 * Label values are bounded: a value the proxy does not know is `unknown`; a label that
 * does not apply is `-` (Envoy's placeholder): `grpc_response_status` of a plain HTTP
 * request, `local_reply` when the upstream answered, `denied` when nothing denied.
 * `local_reply` and `denied` carry the filter's name (`ambit` for the host), never the
 * free-text reason, which goes to the access log.
 *
 * Hot path. prom-client builds, validates and hashes a label object on every `inc` and
 * `observe`, even on a label-bound child. The per-request and per-call metrics therefore
 * keep their numbers in one plain object per label set — counters and histogram buckets
 * together, found by a single string key in a Map — and are registered on the registry
 * as metrics whose `get()` turns those objects into prom-client's values when something
 * reads the registry (a scrape, `getMetricsAsJSON` for cluster aggregation). The output
 * is what prom-client's own Counter and Histogram would give. Rare events (failures,
 * reloads) use prom-client's Counter and Gauge directly.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { PhaseInput, PhaseOutcome } from '../filters/engine.js';
import type { ConnectionRecord, FilterCell, HistogramCounts, RequestCell, RequestRecord } from './types.js';

/** Request durations in seconds: 0.5 ms … 30 s. */
export const REQUEST_DURATION_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** Filter call durations in seconds: 10 µs … 1 s. */
export const FILTER_DURATION_BUCKETS: readonly number[] = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
];

/** Every metric this module registers. */
export const METRIC_NAMES = {
  requests: 'ambit_requests_total',
  requestDuration: 'ambit_request_duration_seconds',
  requestBytes: 'ambit_request_bytes_total',
  responseBytes: 'ambit_response_bytes_total',
  connections: 'ambit_connections_total',
  tcpSentBytes: 'ambit_tcp_sent_bytes_total',
  tcpReceivedBytes: 'ambit_tcp_received_bytes_total',
  filterCalls: 'ambit_filter_calls_total',
  filterCallDuration: 'ambit_filter_call_duration_seconds',
  filterFailures: 'ambit_filter_failures_total',
  filterDeadlineExceeded: 'ambit_filter_deadline_exceeded_total',
  filterCounter: 'ambit_filter_counter_total',
  configReloads: 'ambit_config_reloads_total',
  configLastReloadSuccess: 'ambit_config_last_reload_success_timestamp_seconds',
} as const;

export const UNKNOWN = 'unknown';
export const NONE = '-';

export interface MetricsOptions {
  /**
   * Distinct counter names one filter may create through its `counter` host call;
   * later names are counted under `name="overflow"`. Default 100.
   */
  maxCounterNamesPerFilter?: number;
  /** Told once per filter when it goes past `maxCounterNamesPerFilter`. */
  onCounterOverflow?: (filter: string, name: string) => void;
}

export interface AmbitMetrics {
  readonly registry: Registry;
  request(r: RequestRecord): void;
  /** Requests of one label set counted elsewhere (the native data path). */
  requestCell(c: RequestCell): void;
  connection(r: ConnectionRecord): void;
  filterPhase(phase: PhaseInput['phase'], outcome: PhaseOutcome): void;
  /** One filter's calls in one phase counted elsewhere. */
  filterCell(c: FilterCell): void;
  filterCounter(filter: string, name: string, delta: number): void;
  /**
   * A configuration (re)load finished: counts `ambit_config_reloads_total{result}` and,
   * on success, sets `ambit_config_last_reload_success_timestamp_seconds` to now.
   * Call it for the initial load too, so the timestamp is set from the start.
   */
  reloadResult(ok: boolean, atMs?: number): void;
}

type Labels = Record<string, string>;

/** Separates label values in keys; cannot occur in a workload, namespace or service name. */
const SEP = '\u0001';

// --- histogram cells -------------------------------------------------------------------

interface HistogramCell {
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

function histogramCell(bounds: readonly number[]): HistogramCell {
  return { counts: new Float64Array(bounds.length + 1), sum: 0, count: 0 };
}

/** Adds counts taken on the same bounds elsewhere; counts of other bounds are not added. */
function addCounts(cell: HistogramCell, h: HistogramCounts): void {
  if (h.counts.length !== cell.counts.length) return;
  let n = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i]!;
    if (!(c > 0) || c === Infinity) continue;
    cell.counts[i]! += c;
    n += c;
  }
  cell.count += n;
  if (h.sum > 0 && h.sum !== Infinity) cell.sum += h.sum;
}

function observe(cell: HistogramCell, bounds: readonly number[], v: number): void {
  let i = 0;
  const n = bounds.length;
  while (i < n && v > bounds[i]!) i++;
  cell.counts[i]!++;
  cell.sum += v;
  cell.count++;
}

/** prom-client's values of one histogram series: cumulative buckets, +Inf, sum, count. */
function pushHistogram(out: Value[], name: string, labels: Labels, bounds: readonly number[], cell: HistogramCell): void {
  let acc = 0;
  for (let i = 0; i < bounds.length; i++) {
    acc += cell.counts[i]!;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: bounds[i]! }, value: acc });
  }
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: cell.count });
  out.push({ metricName: `${name}_sum`, labels, value: cell.sum });
  out.push({ metricName: `${name}_count`, labels, value: cell.count });
}

function resetHistogram(cell: HistogramCell): void {
  cell.counts.fill(0);
  cell.sum = 0;
  cell.count = 0;
}

// --- metrics read from plain storage ---------------------------------------------------

interface Value {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/**
 * Registers a metric whose values are computed from the caller's storage when read. It
 * has what a registry and cluster aggregation use of a prom-client metric: `name`,
 * `help`, `type`, `aggregator`, `get()` and `reset()`.
 */
function registerView(
  registry: Registry, type: 'counter' | 'histogram', name: string, help: string,
  values: (name: string) => Value[], reset: () => void,
): void {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum' as const,
    // The registry renames counters for OpenMetrics output: read the name when asked.
    get: async () => ({ name: metric.name, help, type, values: values(metric.name), aggregator: 'sum' as const }),
    reset,
  };
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
}

// --- label values ----------------------------------------------------------------------

// Status codes as label strings, made once.
const STATUS_LABELS: string[] = [];
for (let s = 0; s < 600; s++) STATUS_LABELS.push(String(s));

function statusLabel(status: number): string {
  return (status === 0 || (status >= 100 && status < 600)) && Number.isInteger(status)
    ? STATUS_LABELS[status]!
    : UNKNOWN;
}

const GRPC_CODE = /^\d{1,2}$/;

/** What a request series' labels are made of. */
type RequestFacts = RequestCell['labels'];

function grpcLabel(r: RequestFacts): string {
  const g = r.grpcStatus;
  // gRPC codes are 0–16: keep a one- or two-digit code, nothing else.
  if (g !== undefined && g !== '') return GRPC_CODE.test(g) ? g : UNKNOWN;
  return r.protocol === 'grpc' ? UNKNOWN : NONE;
}

function or(v: string | undefined): string {
  return v ? v : UNKNOWN;
}

/** Non-negative finite number, else 0. */
function amount(n: number): number {
  return n > 0 && n !== Infinity ? n : 0;
}

const OUTCOMES = ['ok', 'trap', 'deadline', 'unavailable'] as const;
type Outcome = typeof OUTCOMES[number];

// --- series ----------------------------------------------------------------------------

interface RequestSeries {
  labels: Labels;
  count: number;
  requestBytes: number;
  responseBytes: number;
  duration: HistogramCell;
}

interface ConnectionSeries {
  labels: Labels;
  /** The same without `denied`, for the byte counters. */
  bytesKey: string;
  bytesLabels: Labels;
  count: number;
  sent: number;
  received: number;
}

interface FilterSeries {
  labels: { filter: string; phase: string };
  counts: Record<Outcome, number>;
  duration: HistogramCell;
}

interface FilterCounters {
  names: Map<string, { labels: Labels; value: number }>;
  overflowed: boolean;
}

export function createMetrics(registry: Registry, options: MetricsOptions = {}): AmbitMetrics {
  const maxNames = options.maxCounterNamesPerFilter ?? 100;

  const requests = new Map<string, RequestSeries>();
  const connections = new Map<string, ConnectionSeries>();
  const filters = new Map<string, FilterSeries>();
  const filterCounters = new Map<string, FilterCounters>();

  // --- requests -----------------------------------------------------------------------

  const requestCounter = (field: 'count' | 'requestBytes' | 'responseBytes') => ({
    values: (): Value[] => {
      const out: Value[] = [];
      for (const s of requests.values()) out.push({ labels: s.labels, value: s[field] });
      return out;
    },
    reset: () => {
      for (const s of requests.values()) s[field] = 0;
    },
  });
  const reqCount = requestCounter('count');
  registerView(registry, 'counter', METRIC_NAMES.requests,
    'Requests handled by the proxy (HTTP/1.1, HTTP/2, gRPC), counted when the response is done.',
    reqCount.values, reqCount.reset);
  registerView(registry, 'histogram', METRIC_NAMES.requestDuration,
    'Time from the first byte of the request to the last byte of the response, in seconds.',
    (name) => {
      const out: Value[] = [];
      for (const s of requests.values()) pushHistogram(out, name, s.labels, REQUEST_DURATION_BUCKETS, s.duration);
      return out;
    },
    () => {
      for (const s of requests.values()) resetHistogram(s.duration);
    });
  const reqBytes = requestCounter('requestBytes');
  registerView(registry, 'counter', METRIC_NAMES.requestBytes,
    'Bytes received from clients in requests (headers and body).', reqBytes.values, reqBytes.reset);
  const respBytes = requestCounter('responseBytes');
  registerView(registry, 'counter', METRIC_NAMES.responseBytes,
    'Bytes sent to clients in responses (headers and body).', respBytes.values, respBytes.reset);

  // --- connections --------------------------------------------------------------------

  registerView(registry, 'counter', METRIC_NAMES.connections,
    'Downstream connections handled, counted when they close.',
    () => [...connections.values()].map((s) => ({ labels: s.labels, value: s.count })),
    () => {
      for (const s of connections.values()) s.count = 0;
    });
  const tcpBytes = (field: 'sent' | 'received') => (): Value[] => {
    // Byte counters have no `denied` label: add up the series that differ only there.
    const byKey = new Map<string, Value>();
    for (const s of connections.values()) {
      const v = byKey.get(s.bytesKey);
      if (v) v.value += s[field];
      else byKey.set(s.bytesKey, { labels: s.bytesLabels, value: s[field] });
    }
    return [...byKey.values()];
  };
  registerView(registry, 'counter', METRIC_NAMES.tcpSentBytes,
    'Bytes sent to clients on connections, counted when a connection closes.',
    tcpBytes('sent'),
    () => {
      for (const s of connections.values()) s.sent = 0;
    });
  registerView(registry, 'counter', METRIC_NAMES.tcpReceivedBytes,
    'Bytes received from clients on connections, counted when a connection closes.',
    tcpBytes('received'),
    () => {
      for (const s of connections.values()) s.received = 0;
    });

  // --- filters ------------------------------------------------------------------------

  registerView(registry, 'counter', METRIC_NAMES.filterCalls,
    'Filter calls by outcome: ok, trap, deadline or unavailable.',
    () => {
      const out: Value[] = [];
      for (const s of filters.values()) {
        for (const outcome of OUTCOMES) {
          // `ok` always shows; a failure outcome once it happened.
          if (outcome === 'ok' || s.counts[outcome] > 0) out.push({ labels: { ...s.labels, outcome }, value: s.counts[outcome] });
        }
      }
      return out;
    },
    () => {
      for (const s of filters.values()) for (const o of OUTCOMES) s.counts[o] = 0;
    });
  registerView(registry, 'histogram', METRIC_NAMES.filterCallDuration,
    'Time of one filter call as the host saw it, in seconds.',
    (name) => {
      const out: Value[] = [];
      for (const s of filters.values()) pushHistogram(out, name, s.labels, FILTER_DURATION_BUCKETS, s.duration);
      return out;
    },
    () => {
      for (const s of filters.values()) resetHistogram(s.duration);
    });
  const filterFailures = new Counter({
    name: METRIC_NAMES.filterFailures,
    help: 'Filter calls that returned no action, by kind (trap, deadline, unavailable) and the failure policy applied.',
    labelNames: ['filter', 'phase', 'kind', 'policy'] as const,
    registers: [registry],
  });
  const filterDeadline = new Counter({
    name: METRIC_NAMES.filterDeadlineExceeded,
    help: 'Filter calls stopped for running past their deadline.',
    labelNames: ['filter'] as const,
    registers: [registry],
  });
  registerView(registry, 'counter', METRIC_NAMES.filterCounter,
    'Counters filters increment through their counter host call.',
    () => {
      const out: Value[] = [];
      for (const fc of filterCounters.values()) for (const c of fc.names.values()) out.push({ labels: c.labels, value: c.value });
      return out;
    },
    () => {
      for (const fc of filterCounters.values()) for (const c of fc.names.values()) c.value = 0;
    });

  // --- configuration ------------------------------------------------------------------

  const reloads = new Counter({
    name: METRIC_NAMES.configReloads,
    help: 'Configuration loads and reloads, by result (success or failure).',
    labelNames: ['result'] as const,
    registers: [registry],
    // Every cluster worker applies each reload: the count is the largest, not the sum.
    aggregator: 'max',
  });
  reloads.inc({ result: 'success' }, 0);
  reloads.inc({ result: 'failure' }, 0);
  const lastReload = new Gauge({
    name: METRIC_NAMES.configLastReloadSuccess,
    help: 'Unix time of the last configuration load that succeeded, in seconds.',
    registers: [registry],
    aggregator: 'max',
  });

  // --- the calls ----------------------------------------------------------------------

  function newRequestSeries(key: string, r: RequestFacts, code: string, grpc: string, local: string): RequestSeries {
    const s: RequestSeries = {
      labels: {
        direction: r.direction,
        protocol: or(r.protocol),
        response_code: code,
        grpc_response_status: grpc,
        source_workload: or(r.source.workload),
        source_namespace: or(r.source.namespace),
        destination_workload: or(r.destination.workload),
        destination_namespace: or(r.destination.namespace),
        destination_service: or(r.service),
        local_reply: local,
      },
      count: 0,
      requestBytes: 0,
      responseBytes: 0,
      duration: histogramCell(REQUEST_DURATION_BUCKETS),
    };
    requests.set(key, s);
    return s;
  }

  function requestSeries(r: RequestFacts): RequestSeries {
    const code = statusLabel(r.status);
    const grpc = grpcLabel(r);
    const local = r.localReply ? or(r.localReply.filter) : NONE;
    // The key is made of the label values themselves: one label set, one key.
    const key = r.direction + SEP + or(r.protocol) + SEP + code + SEP + grpc
      + SEP + or(r.source.workload) + SEP + or(r.source.namespace)
      + SEP + or(r.destination.workload) + SEP + or(r.destination.namespace)
      + SEP + or(r.service) + SEP + local;
    return requests.get(key) ?? newRequestSeries(key, r, code, grpc, local);
  }

  function filterSeries(phase: string, filter: string): FilterSeries {
    const key = phase + SEP + filter;
    let s = filters.get(key);
    if (!s) {
      s = {
        labels: { filter, phase },
        counts: { ok: 0, trap: 0, deadline: 0, unavailable: 0 },
        duration: histogramCell(FILTER_DURATION_BUCKETS),
      };
      filters.set(key, s);
    }
    return s;
  }

  return {
    registry,

    request(r) {
      const s = requestSeries(r);
      s.count++;
      s.requestBytes += amount(r.bytesReceived);
      s.responseBytes += amount(r.bytesSent);
      const ms = r.durationMs;
      if (ms >= 0 && ms !== Infinity) observe(s.duration, REQUEST_DURATION_BUCKETS, ms / 1000);
    },

    requestCell(c) {
      const s = requestSeries(c.labels);
      s.count += amount(c.count);
      s.requestBytes += amount(c.requestBytes);
      s.responseBytes += amount(c.responseBytes);
      addCounts(s.duration, c.duration);
    },

    connection(r) {
      const service = or(r.service);
      const denied = r.denied ? or(r.denied.filter) : NONE;
      const bytesKey = r.direction + SEP + r.mode + SEP + service;
      const key = bytesKey + SEP + denied;
      let s = connections.get(key);
      if (!s) {
        const bytesLabels = { direction: r.direction, mode: r.mode, destination_service: service };
        s = { labels: { ...bytesLabels, denied }, bytesKey, bytesLabels, count: 0, sent: 0, received: 0 };
        connections.set(key, s);
      }
      s.count++;
      s.sent += amount(r.bytesSent);
      s.received += amount(r.bytesReceived);
    },

    filterPhase(phase, outcome) {
      const calls = outcome.calls;
      for (let i = 0; i < calls.length; i++) {
        const c = calls[i]!;
        const s = filterSeries(phase, c.filter);
        if (s.counts[c.outcome] !== undefined) s.counts[c.outcome]++;
        const ms = c.durationMs;
        if (ms >= 0 && ms !== Infinity) observe(s.duration, FILTER_DURATION_BUCKETS, ms / 1000);
      }
      const failures = outcome.failures;
      for (let i = 0; i < failures.length; i++) {
        const f = failures[i]!;
        filterFailures.inc({ filter: f.filter, phase, kind: f.kind, policy: f.policy });
        if (f.kind === 'deadline') filterDeadline.inc({ filter: f.filter });
      }
    },

    filterCell(c) {
      const s = filterSeries(c.phase, c.filter);
      s.counts.ok += amount(c.ok);
      s.counts.trap += amount(c.trap);
      s.counts.deadline += amount(c.deadline);
      s.counts.unavailable += amount(c.unavailable);
      addCounts(s.duration, c.duration);
    },

    filterCounter(filter, name, delta) {
      // Counters only go up; a filter's bad delta is dropped rather than thrown.
      if (!(delta > 0) || delta === Infinity) return;
      let fc = filterCounters.get(filter);
      if (!fc) filterCounters.set(filter, (fc = { names: new Map(), overflowed: false }));
      let c = fc.names.get(name);
      if (!c) {
        if (fc.names.size >= maxNames) {
          if (!fc.overflowed) {
            fc.overflowed = true;
            options.onCounterOverflow?.(filter, name);
          }
          c = fc.names.get('overflow');
          if (!c) fc.names.set('overflow', (c = { labels: { filter, name: 'overflow' }, value: 0 }));
        } else {
          fc.names.set(name, (c = { labels: { filter, name }, value: 0 }));
        }
      }
      c.value += delta;
    },

    reloadResult(ok, atMs = Date.now()) {
      reloads.inc({ result: ok ? 'success' : 'failure' });
      if (ok) lastReload.set(atMs / 1000);
    },
  };
}
