import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PhaseOutcome } from '../src/filters/engine.js';
import { createMetrics, createTelemetry, METRIC_NAMES, type AmbitTelemetry } from '../src/telemetry/index.js';
import type { ConnectionRecord, RequestRecord } from '../src/telemetry/types.js';

const here = dirname(fileURLToPath(import.meta.url));

// --- Prometheus text parsing ---------------------------------------------------------

interface Sample { name: string; labels: Record<string, string>; value: number }

function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad exposition line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples named `name` whose labels include `match`. */
function value(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  const hits = samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  if (hits.length === 0) throw new Error(`no sample ${name} ${JSON.stringify(match)}`);
  return hits.reduce((a, s) => a + s.value, 0);
}

async function scrape(registry: Registry): Promise<Sample[]> {
  return parseExposition(await registry.metrics());
}

// --- records -------------------------------------------------------------------------

function request(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    direction: 'inbound',
    protocol: 'http/1.1',
    method: 'GET',
    authority: 'reviews.default:9080',
    path: '/reviews/1',
    status: 200,
    durationMs: 12.5,
    requestId: 'req-1',
    source: { address: '10.0.0.1', port: 40000, workload: 'productpage-v1', namespace: 'default', identity: 'spiffe://cluster.local/ns/default/sa/productpage' },
    destination: { address: '10.0.0.2', port: 9080, workload: 'reviews-v1', namespace: 'default', identity: 'spiffe://cluster.local/ns/default/sa/reviews' },
    service: 'reviews.default',
    upstream: { address: '10.0.0.2', port: 9080 },
    attempts: 1,
    bytesReceived: 100,
    bytesSent: 1000,
    userAgent: 'curl/8.0',
    ...over,
  };
}

function connection(over: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return {
    direction: 'outbound',
    mode: 'l4',
    source: { address: '10.0.0.1', port: 40001, workload: 'productpage-v1', namespace: 'default' },
    destination: { address: '10.0.0.3', port: 5432 },
    service: 'db.data',
    upstream: { address: '10.0.0.3', port: 5432 },
    bytesReceived: 300,
    bytesSent: 700,
    durationMs: 2000,
    ...over,
  };
}

function outcome(over: Partial<PhaseOutcome> & Pick<PhaseOutcome, 'calls' | 'failures'>): PhaseOutcome {
  return { action: 'continue', ops: [], ...over } as PhaseOutcome;
}

function readLines(file: string): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

// --- tests ---------------------------------------------------------------------------

describe('telemetry', () => {
  let dir: string;
  let registry: Registry;
  let opsFile: string;
  let accessFile: string;
  let telemetry: AmbitTelemetry;
  let opsLogger: pino.Logger;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ambit-telemetry-'));
    registry = new Registry();
    opsFile = join(dir, 'ops.log');
    accessFile = join(dir, 'logs', 'access.log');
    opsLogger = pino({ level: 'debug' }, pino.destination({ dest: opsFile, sync: false, minLength: 4096 }));
    telemetry = createTelemetry({ registry, accessLog: { file: accessFile }, logger: opsLogger });
  });

  afterEach(async () => {
    await telemetry.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts requests with Istio-style labels, bytes and durations', async () => {
    telemetry.request(request());
    telemetry.request(request({ durationMs: 250, bytesReceived: 50, bytesSent: 10 }));
    telemetry.request(request({
      protocol: 'grpc', status: 200, grpcStatus: '14', durationMs: 0.2,
      source: { address: '10.9.9.9', port: 1234 }, service: undefined,
      localReply: { filter: 'authz', reason: 'denied by policy' },
    }));
    telemetry.request(request({ status: 503, bytesReceived: -5, durationMs: Number.NaN }));

    const s = await scrape(registry);
    const base = {
      direction: 'inbound', protocol: 'http/1.1', response_code: '200', grpc_response_status: '-',
      source_workload: 'productpage-v1', source_namespace: 'default', destination_workload: 'reviews-v1',
      destination_namespace: 'default', destination_service: 'reviews.default', local_reply: '-',
    };
    expect(value(s, 'ambit_requests_total', base)).toBe(2);
    expect(value(s, 'ambit_request_bytes_total', base)).toBe(150);
    expect(value(s, 'ambit_response_bytes_total', base)).toBe(1010);
    expect(value(s, 'ambit_request_duration_seconds_count', base)).toBe(2);
    expect(value(s, 'ambit_request_duration_seconds_sum', base)).toBeCloseTo(0.2625, 6);
    expect(value(s, 'ambit_request_duration_seconds_bucket', { ...base, le: '0.025' })).toBe(1);
    expect(value(s, 'ambit_request_duration_seconds_bucket', { ...base, le: '0.25' })).toBe(2);
    expect(value(s, 'ambit_request_duration_seconds_bucket', { ...base, le: '0.0005' })).toBe(0);
    expect(value(s, 'ambit_request_duration_seconds_bucket', { ...base, le: '30' })).toBe(2);

    // Unknown peers and services are "unknown"; the local reply names its filter.
    expect(value(s, 'ambit_requests_total', {
      protocol: 'grpc', grpc_response_status: '14', source_workload: 'unknown', source_namespace: 'unknown',
      destination_service: 'unknown', local_reply: 'authz',
    })).toBe(1);
    expect(value(s, 'ambit_request_duration_seconds_bucket', { protocol: 'grpc', le: '0.0005' })).toBe(1);

    // A negative byte count adds nothing, a NaN duration is not observed, the request still counts.
    expect(value(s, 'ambit_requests_total', { response_code: '503' })).toBe(1);
    expect(value(s, 'ambit_request_bytes_total', { response_code: '503' })).toBe(0);
    expect(value(s, 'ambit_request_duration_seconds_count', { response_code: '503' })).toBe(0);

    // Counts kept between scrapes are added, not lost or doubled.
    telemetry.request(request());
    const s2 = await scrape(registry);
    expect(value(s2, 'ambit_requests_total', base)).toBe(3);
    expect(value(s2, 'ambit_request_bytes_total', base)).toBe(250);
  });

  it('bounds label values: odd status and gRPC codes become "unknown"', async () => {
    telemetry.request(request({ status: 1234, protocol: 'grpc', grpcStatus: 'oops' }));
    telemetry.request(request({ protocol: 'grpc' }));
    const s = await scrape(registry);
    expect(value(s, 'ambit_requests_total', { response_code: 'unknown', grpc_response_status: 'unknown' })).toBe(1);
    expect(value(s, 'ambit_requests_total', { response_code: '200', grpc_response_status: 'unknown' })).toBe(1);
  });

  it('counts connections and their bytes', async () => {
    telemetry.connection(connection());
    telemetry.connection(connection({ bytesReceived: 1, bytesSent: 2 }));
    telemetry.connection(connection({ direction: 'inbound', mode: 'l7', service: undefined, denied: { filter: 'authz', reason: 'no' }, bytesReceived: 0, bytesSent: 0 }));
    const s = await scrape(registry);
    expect(value(s, 'ambit_connections_total', { direction: 'outbound', mode: 'l4', destination_service: 'db.data', denied: '-' })).toBe(2);
    expect(value(s, 'ambit_connections_total', { direction: 'inbound', mode: 'l7', destination_service: 'unknown', denied: 'authz' })).toBe(1);
    expect(value(s, 'ambit_tcp_received_bytes_total', { direction: 'outbound', mode: 'l4', destination_service: 'db.data' })).toBe(301);
    expect(value(s, 'ambit_tcp_sent_bytes_total', { direction: 'outbound', mode: 'l4', destination_service: 'db.data' })).toBe(702);
  });

  it('counts filter calls, durations, failures and deadlines per phase', async () => {
    telemetry.filterPhase('requestHeaders', outcome({
      calls: [
        { filter: 'authz', durationMs: 0.05, outcome: 'ok' },
        { filter: 'ratelimit', durationMs: 0.3, outcome: 'ok' },
      ],
      failures: [],
    }));
    telemetry.filterPhase('requestHeaders', outcome({
      calls: [
        { filter: 'authz', durationMs: 0.02, outcome: 'ok' },
        { filter: 'ratelimit', durationMs: 50.5, outcome: 'deadline' },
      ],
      failures: [{ filter: 'ratelimit', kind: 'deadline', message: 'past 50 ms', policy: 'fail-open' }],
    }));
    telemetry.filterPhase('responseHeaders', outcome({
      calls: [{ filter: 'authz', durationMs: 1, outcome: 'trap' }],
      failures: [{ filter: 'authz', kind: 'trap', message: 'unreachable', policy: 'fail-closed' }],
    }));
    telemetry.filterPhase('connection', outcome({
      calls: [],
      failures: [{ filter: 'authz', kind: 'unavailable', message: 'no worker', policy: 'fail-closed' }],
    }));

    const s = await scrape(registry);
    expect(value(s, 'ambit_filter_calls_total', { filter: 'authz', phase: 'requestHeaders', outcome: 'ok' })).toBe(2);
    expect(value(s, 'ambit_filter_calls_total', { filter: 'ratelimit', phase: 'requestHeaders', outcome: 'ok' })).toBe(1);
    expect(value(s, 'ambit_filter_calls_total', { filter: 'ratelimit', phase: 'requestHeaders', outcome: 'deadline' })).toBe(1);
    expect(value(s, 'ambit_filter_calls_total', { filter: 'authz', phase: 'responseHeaders', outcome: 'trap' })).toBe(1);
    expect(value(s, 'ambit_filter_call_duration_seconds_count', { filter: 'authz', phase: 'requestHeaders' })).toBe(2);
    expect(value(s, 'ambit_filter_call_duration_seconds_bucket', { filter: 'authz', phase: 'requestHeaders', le: '0.00005' })).toBe(2);
    expect(value(s, 'ambit_filter_call_duration_seconds_bucket', { filter: 'authz', phase: 'requestHeaders', le: '0.00001' })).toBe(0);
    expect(value(s, 'ambit_filter_call_duration_seconds_bucket', { filter: 'ratelimit', phase: 'requestHeaders', le: '0.00025' })).toBe(0);
    expect(value(s, 'ambit_filter_call_duration_seconds_bucket', { filter: 'ratelimit', phase: 'requestHeaders', le: '0.05' })).toBe(1);
    expect(value(s, 'ambit_filter_call_duration_seconds_bucket', { filter: 'ratelimit', phase: 'requestHeaders', le: '0.1' })).toBe(2);
    expect(value(s, 'ambit_filter_call_duration_seconds_bucket', { filter: 'ratelimit', phase: 'requestHeaders', le: '1' })).toBe(2);
    expect(value(s, 'ambit_filter_failures_total', { filter: 'ratelimit', phase: 'requestHeaders', kind: 'deadline', policy: 'fail-open' })).toBe(1);
    expect(value(s, 'ambit_filter_failures_total', { filter: 'authz', phase: 'responseHeaders', kind: 'trap', policy: 'fail-closed' })).toBe(1);
    expect(value(s, 'ambit_filter_failures_total', { filter: 'authz', phase: 'connection', kind: 'unavailable', policy: 'fail-closed' })).toBe(1);
    expect(value(s, 'ambit_filter_deadline_exceeded_total', { filter: 'ratelimit' })).toBe(1);
    expect(s.some((x) => x.name === 'ambit_filter_deadline_exceeded_total' && x.labels.filter === 'authz')).toBe(false);
  });

  it("counts filters' counters, drops bad deltas and caps the names per filter", async () => {
    const reg = new Registry();
    const overflows: string[] = [];
    const m = createMetrics(reg, { maxCounterNamesPerFilter: 2, onCounterOverflow: (f, n) => overflows.push(`${f}/${n}`) });
    m.filterCounter('ratelimit', 'allowed', 1);
    m.filterCounter('ratelimit', 'allowed', 2.5);
    m.filterCounter('ratelimit', 'limited', 1);
    m.filterCounter('ratelimit', 'limited', -4);
    m.filterCounter('ratelimit', 'limited', Number.NaN);
    m.filterCounter('ratelimit', 'third', 5);
    m.filterCounter('ratelimit', 'fourth', 1);
    m.filterCounter('authz', 'denied', 1);
    const s = await scrape(reg);
    expect(value(s, 'ambit_filter_counter_total', { filter: 'ratelimit', name: 'allowed' })).toBe(3.5);
    expect(value(s, 'ambit_filter_counter_total', { filter: 'ratelimit', name: 'limited' })).toBe(1);
    expect(value(s, 'ambit_filter_counter_total', { filter: 'ratelimit', name: 'overflow' })).toBe(6);
    expect(value(s, 'ambit_filter_counter_total', { filter: 'authz', name: 'denied' })).toBe(1);
    expect(s.some((x) => x.labels.name === 'third')).toBe(false);
    expect(overflows).toEqual(['ratelimit/third']);
  });

  it('warns in the operational log when a filter has too many counter names', async () => {
    const reg = new Registry();
    const t = createTelemetry({ registry: reg, accessLog: 'off', logger: opsLogger, metrics: { maxCounterNamesPerFilter: 1 } });
    t.filterCounter('noisy', 'a', 1);
    t.filterCounter('noisy', 'b', 1);
    await t.flush();
    const warn = readLines(opsFile).find((l) => l.filter === 'noisy');
    expect(warn).toMatchObject({ level: 40, name: 'b', limit: 1 });
  });

  it('keeps one series per label set across many label sets and scrapes', async () => {
    const reg = new Registry();
    const m = createMetrics(reg);
    for (let i = 0; i < 100; i++) m.request(request({ service: `svc-${i % 25}.default` }));
    for (let i = 0; i < 100; i++) {
      m.filterPhase('requestHeaders', outcome({ calls: [{ filter: `f${i % 5}`, durationMs: 1, outcome: 'ok' }], failures: [] }));
    }
    for (let i = 0; i < 100; i++) m.connection(connection({ service: `svc-${i % 5}.default`, denied: i % 2 ? { filter: 'authz', reason: 'x' } : undefined }));
    const text = await reg.metrics();
    const s = parseExposition(text);
    expect(s.filter((x) => x.name === 'ambit_requests_total')).toHaveLength(25);
    expect(value(s, 'ambit_requests_total')).toBe(100);
    expect(value(s, 'ambit_request_duration_seconds_count')).toBe(100);
    expect(value(s, 'ambit_requests_total', { destination_service: 'svc-4.default' })).toBe(4);
    expect(value(s, 'ambit_filter_calls_total')).toBe(100);
    expect(value(s, 'ambit_filter_calls_total', { filter: 'f3' })).toBe(20);
    expect(s.filter((x) => x.name === 'ambit_connections_total')).toHaveLength(10);
    // Byte counters have no `denied` label: one series per service.
    expect(s.filter((x) => x.name === 'ambit_tcp_sent_bytes_total')).toHaveLength(5);
    expect(value(s, 'ambit_tcp_sent_bytes_total', { destination_service: 'svc-0.default' })).toBe(20 * 700);
    // Label sets are written once each, histograms with every bucket and +Inf.
    expect(text.match(/^ambit_request_duration_seconds_bucket\{[^}]*destination_service="svc-0\.default"[^}]*\}/gm)).toHaveLength(16);
    expect(text).toMatch(/^ambit_request_duration_seconds_bucket\{[^}]*le="\+Inf"\} 4$/m);

    // resetMetrics() zeroes every series.
    reg.resetMetrics();
    const z = await scrape(reg);
    expect(value(z, 'ambit_requests_total')).toBe(0);
    expect(value(z, 'ambit_request_duration_seconds_count')).toBe(0);
    expect(value(z, 'ambit_filter_calls_total')).toBe(0);
    m.request(request());
    expect(value(await scrape(reg), 'ambit_requests_total')).toBe(1);
  });

  it('reads the same through getMetricsAsJSON, as cluster aggregation does', async () => {
    const reg = new Registry();
    const m = createMetrics(reg);
    m.request(request());
    m.request(request({ durationMs: 2000 }));
    const json = await reg.getMetricsAsJSON();
    const byName = new Map(json.map((j) => [j.name, j]));
    expect(byName.get('ambit_requests_total')).toMatchObject({ type: 'counter', aggregator: 'sum', values: [{ value: 2 }] });
    const h = byName.get('ambit_request_duration_seconds')!;
    expect(h.type).toBe('histogram');
    const count = h.values.find((v) => (v as { metricName?: string }).metricName === 'ambit_request_duration_seconds_count');
    expect(count?.value).toBe(2);
    const { AggregatorRegistry } = await import('prom-client');
    const merged = AggregatorRegistry.aggregate([json, json]);
    const s = parseExposition(await merged.metrics());
    expect(value(s, 'ambit_requests_total')).toBe(4);
    expect(value(s, 'ambit_request_duration_seconds_bucket', { le: '2.5' })).toBe(4);
    expect(value(s, 'ambit_request_duration_seconds_bucket', { le: '0.01' })).toBe(0);
    expect(value(s, 'ambit_request_duration_seconds_bucket', { le: '0.025' })).toBe(2);
  });

  it('records configuration reloads', async () => {
    let s = await scrape(registry);
    expect(value(s, 'ambit_config_reloads_total', { result: 'success' })).toBe(0);
    expect(value(s, 'ambit_config_reloads_total', { result: 'failure' })).toBe(0);
    const before = Date.now() / 1000;
    telemetry.reloadResult(true);
    telemetry.reloadResult(false);
    telemetry.reloadResult(true);
    s = await scrape(registry);
    expect(value(s, 'ambit_config_reloads_total', { result: 'success' })).toBe(2);
    expect(value(s, 'ambit_config_reloads_total', { result: 'failure' })).toBe(1);
    const ts = value(s, 'ambit_config_last_reload_success_timestamp_seconds');
    expect(ts).toBeGreaterThanOrEqual(Math.floor(before));
    expect(ts).toBeLessThanOrEqual(Date.now() / 1000 + 1);
  });

  it('registers every metric on the given registry, none on the global one', async () => {
    const text = await registry.metrics();
    for (const name of Object.values(METRIC_NAMES)) expect(text).toContain(`# TYPE ${name} `);
    const { register } = await import('prom-client');
    expect(register.getSingleMetric('ambit_requests_total')).toBeUndefined();
  });

  it('writes one JSON access-log line per request and per connection', async () => {
    telemetry.request(request({ requestId: 'abc-123', localReply: { filter: 'authz', reason: 'denied by policy' }, status: 403, upstreamError: 'reset', attempts: 2 }));
    telemetry.request(request({
      protocol: 'grpc', grpcStatus: '0', source: { address: 'fd00::1', port: 5000 }, upstream: undefined, userAgent: undefined,
    }));
    telemetry.connection(connection({ denied: { filter: 'l4-authz', reason: 'not allowed' }, error: 'closed by filter' }));
    await telemetry.flush();

    const lines = readFileSync(accessFile, 'utf8').split('\n');
    expect(lines.at(-1)).toBe('');
    const recs = lines.filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(recs).toHaveLength(3);

    const [a, b, c] = recs as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
    expect(Object.keys(a).slice(0, 3)).toEqual(['log', 'type', 'start_time']);
    expect(a).toMatchObject({
      log: 'access', type: 'request', direction: 'inbound', method: 'GET', path: '/reviews/1', protocol: 'http/1.1',
      response_code: 403, grpc_status: null, local_reply: 'authz', local_reply_reason: 'denied by policy',
      bytes_received: 100, bytes_sent: 1000, duration: 12.5, upstream_host: '10.0.0.2:9080',
      upstream_cluster: 'reviews.default', upstream_error: 'reset', attempts: 2, request_id: 'abc-123',
      authority: 'reviews.default:9080', user_agent: 'curl/8.0',
      downstream_remote_address: '10.0.0.1:40000', downstream_local_address: '10.0.0.2:9080',
      source_workload: 'productpage-v1', source_namespace: 'default',
      source_principal: 'spiffe://cluster.local/ns/default/sa/productpage',
      destination_workload: 'reviews-v1', destination_namespace: 'default',
      destination_principal: 'spiffe://cluster.local/ns/default/sa/reviews',
      destination_service: 'reviews.default',
    });
    // No pino decoration on access lines.
    expect(a).not.toHaveProperty('level');
    expect(a).not.toHaveProperty('time');
    expect(a).not.toHaveProperty('pid');
    const start = Date.parse(a.start_time as string);
    expect(Math.abs(Date.now() - start)).toBeLessThan(10_000);
    expect(a.start_time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    expect(b).toMatchObject({
      protocol: 'grpc', grpc_status: '0', local_reply: null, upstream_host: null, user_agent: null,
      downstream_remote_address: '[fd00::1]:5000', source_workload: null, source_principal: null,
    });

    expect(c).toMatchObject({
      log: 'access', type: 'connection', direction: 'outbound', mode: 'l4', bytes_received: 300, bytes_sent: 700, duration: 2000,
      upstream_host: '10.0.0.3:5432', denied: 'l4-authz', denied_reason: 'not allowed', error: 'closed by filter',
      source_workload: 'productpage-v1', destination_workload: null, destination_service: 'db.data',
      downstream_remote_address: '10.0.0.1:40001',
    });
  });

  it('buffers access-log lines and flush() writes every one of them', async () => {
    const n = 3000;
    for (let i = 0; i < n; i++) telemetry.request(request({ requestId: `r-${i}` }));
    for (let i = 0; i < 10; i++) telemetry.connection(connection());
    await telemetry.flush();
    const recs = readLines(accessFile);
    expect(recs).toHaveLength(n + 10);
    expect(recs.filter((r) => r.type === 'request').map((r) => r.request_id)).toEqual(Array.from({ length: n }, (_, i) => `r-${i}`));

    // A second flush with nothing new is harmless; later lines still come through.
    await telemetry.flush();
    telemetry.request(request({ requestId: 'last' }));
    await telemetry.flush();
    expect(readLines(accessFile).at(-1)?.request_id).toBe('last');
  });

  it('flush() also writes lines buffered behind a write in flight', async () => {
    // A burst past the 32 KiB buffer starts a write; lines logged while it runs stay
    // buffered. flush() must wait for those too, whatever the sizes.
    let expected = 0;
    for (const burst of [30, 41, 50, 60, 100, 333]) {
      for (let i = 0; i < burst; i++) telemetry.request(request({ requestId: `b${burst}-${i}` }));
      await new Promise((r) => setImmediate(r));
      for (let i = 0; i < 3; i++) telemetry.request(request({ requestId: `t${burst}-${i}` }));
      expected += burst + 3;
      await telemetry.flush();
      const recs = readLines(accessFile);
      expect(recs).toHaveLength(expected);
      expect(recs.at(-1)?.request_id).toBe(`t${burst}-2`);
    }
  });

  it('writes buffered lines within the flush interval without an explicit flush', async () => {
    telemetry.request(request({ requestId: 'lonely' }));
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && readLines(accessFile).length === 0) await new Promise((r) => setTimeout(r, 100));
    expect(readLines(accessFile).map((r) => r.request_id)).toEqual(['lonely']);
  });

  it('logs nothing when the access log is off', async () => {
    const t = createTelemetry({ registry: new Registry(), accessLog: 'off', logger: opsLogger });
    t.request(request());
    t.connection(connection());
    await t.flush();
    await telemetry.flush();
    expect(readLines(accessFile)).toHaveLength(0);
    expect(readLines(opsFile)).toHaveLength(0);
  });

  it('sends filter log lines to the operational log with the filter name and level', async () => {
    telemetry.filterLog('authz', 'warn', 'policy missing for /admin');
    telemetry.filterLog('authz', 'debug', 'checking');
    telemetry.filterLog('authz', 'trace', 'too fine to log');
    telemetry.filterLog('ratelimit', 'error', 'x'.repeat(10_000));
    telemetry.info('config reloaded', { generation: 3 });
    telemetry.warn('slow upstream');
    telemetry.error('listener failed', { port: 15001 });
    await telemetry.flush();
    const lines = readLines(opsFile);
    expect(lines.map((l) => [l.filter, l.level, typeof l.msg === 'string' ? l.msg.slice(0, 25) : l.msg])).toEqual([
      ['authz', 40, 'policy missing for /admin'],
      ['authz', 20, 'checking'],
      ['ratelimit', 50, 'xxxxxxxxxxxxxxxxxxxxxxxxx'],
      [undefined, 30, 'config reloaded'],
      [undefined, 40, 'slow upstream'],
      [undefined, 50, 'listener failed'],
    ]);
    expect((lines[2]!.msg as string).length).toBeLessThan(8300);
    expect(lines[3]).toMatchObject({ generation: 3 });
    expect(lines[5]).toMatchObject({ port: 15001 });
    // Nothing filter-related went to the access log.
    expect(readLines(accessFile)).toHaveLength(0);
  });
});

describe('telemetry on stdout (child process, built dist)', () => {
  const dist = join(here, '../dist/telemetry/index.js');
  const promClient = join(here, '../../node_modules/prom-client/index.js');

  it('shares one buffered stdout destination between the operational and access logs and flushes it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-stdout-'));
    try {
      const script = join(dir, 'main.mjs');
      writeFileSync(script, `
        const { createTelemetry } = await import(${JSON.stringify(pathToFileURL(dist).href)});
        const { Registry } = await import(${JSON.stringify(pathToFileURL(promClient).href)});
        const t = createTelemetry({ registry: new Registry() });
        t.info('starting', { workers: 2 });
        for (let i = 0; i < 500; i++) {
          t.request({ direction: 'outbound', protocol: 'h2', method: 'POST', authority: 'a', path: '/p/' + 'x'.repeat(200),
            status: 200, durationMs: 1, requestId: 'r' + i, source: { address: '127.0.0.1', port: 1 },
            destination: { address: '127.0.0.1', port: 2 }, attempts: 1, bytesReceived: 1, bytesSent: 2 });
          if (i % 100 === 0) t.filterLog('authz', 'info', 'line ' + i);
        }
        await t.flush();
        process.exit(0);
      `);
      const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30_000 });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.filter((l) => l.type === 'request')).toHaveLength(500);
      expect(lines.filter((l) => l.filter === 'authz')).toHaveLength(5);
      expect(lines[0]).toMatchObject({ level: 'info', name: 'ambit', msg: 'starting', workers: 2 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
