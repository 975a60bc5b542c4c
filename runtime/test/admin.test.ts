import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registryMetrics, startAdminServer, type AdminServer } from '../src/admin/index.js';
import { createMetrics, METRIC_NAMES } from '../src/telemetry/index.js';

const here = dirname(fileURLToPath(import.meta.url));

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: string }

function call(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('admin server', () => {
  let server: AdminServer;
  let port: number;
  let state: { ready: boolean; reason?: string } = { ready: false, reason: 'filters not loaded' };
  let dump: () => unknown;
  let metricsFail = false;
  const registry = new Registry();
  const metrics = createMetrics(registry);

  beforeAll(async () => {
    dump = () => ({
      listeners: [{ port: 15001, direction: 'outbound' }],
      filters: [{ name: 'authz', sha256: 'ab'.repeat(32), wasm: new Uint8Array(1234), config: { rules: ['allow'] } }],
      tls: { privateKey: 'secret-bytes', certificate: 'cert', key: '-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n' },
      ratelimit: { max_tokens: 10, access_token: 'xyz' },
      services: new Map([['reviews.default', { endpoints: 2 }]]),
    });
    const provider = registryMetrics(registry);
    server = await startAdminServer({
      address: '127.0.0.1',
      port: 0,
      ready: () => state,
      configDump: () => dump(),
      metrics: async () => {
        if (metricsFail) throw new Error('workers gone');
        return provider();
      },
    });
    port = server.address().port;
  });

  afterAll(async () => {
    await server.close();
  });

  it('listens on the given address', () => {
    expect(server.address().address).toBe('127.0.0.1');
    expect(port).toBeGreaterThan(0);
  });

  it('GET /healthz answers ok', async () => {
    const r = await call(port, '/healthz');
    expect(r.status).toBe(200);
    expect(r.body).toBe('ok\n');
    expect(r.headers['cache-control']).toBe('no-store');
  });

  it('GET /ready answers 503 with the reason, then 200 once ready', async () => {
    state = { ready: false, reason: 'filters not loaded' };
    let r = await call(port, '/ready');
    expect(r.status).toBe(503);
    expect(r.body).toContain('filters not loaded');
    state = { ready: true };
    r = await call(port, '/ready');
    expect(r.status).toBe(200);
    expect(r.body).toBe('ready\n');
  });

  it('GET /config_dump answers the configuration as JSON, without secrets or raw bytes', async () => {
    const r = await call(port, '/config_dump');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    const body = JSON.parse(r.body) as {
      filters: Array<Record<string, unknown>>; tls: Record<string, unknown>; ratelimit: Record<string, unknown>;
      services: Record<string, unknown>; listeners: unknown[];
    };
    expect(body.listeners).toEqual([{ port: 15001, direction: 'outbound' }]);
    expect(body.filters[0]).toEqual({ name: 'authz', sha256: 'ab'.repeat(32), wasm: '<1234 bytes>', config: { rules: ['allow'] } });
    expect(body.tls).toEqual({ privateKey: '[redacted]', certificate: 'cert', key: '[redacted]' });
    expect(body.ratelimit).toEqual({ max_tokens: 10, access_token: '[redacted]' });
    expect(body.services).toEqual({ 'reviews.default': { endpoints: 2 } });
    expect(r.body).not.toContain('PRIVATE KEY');
    expect(r.body).not.toContain('secret-bytes');
  });

  it('GET /config_dump answers 500 when the provider throws', async () => {
    const saved = dump;
    dump = () => {
      throw new Error('no config yet');
    };
    try {
      const r = await call(port, '/config_dump');
      expect(r.status).toBe(500);
      expect(r.body).toContain('no config yet');
    } finally {
      dump = saved;
    }
  });

  it('GET /stats/prometheus answers the text format with the metric names', async () => {
    metrics.request({
      direction: 'inbound', protocol: 'http/1.1', method: 'GET', authority: 'a', path: '/', status: 200,
      durationMs: 3, requestId: 'r', source: { address: '10.0.0.1', port: 1 }, destination: { address: '10.0.0.2', port: 2 },
      attempts: 1, bytesReceived: 10, bytesSent: 20,
    });
    metrics.reloadResult(true);
    const r = await call(port, '/stats/prometheus?format=text');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const name of Object.values(METRIC_NAMES)) expect(r.body).toContain(`# TYPE ${name} `);
    expect(r.body).toMatch(/^ambit_requests_total\{direction="inbound",.*\} 1$/m);
    expect(r.body).toMatch(/^ambit_config_reloads_total\{result="success"\} 1$/m);
  });

  it('GET /stats/prometheus answers 500 when the provider fails', async () => {
    metricsFail = true;
    try {
      const r = await call(port, '/stats/prometheus');
      expect(r.status).toBe(500);
      expect(r.body).toContain('workers gone');
    } finally {
      metricsFail = false;
    }
  });

  it('GET / lists the endpoints', async () => {
    const r = await call(port, '/');
    expect(r.status).toBe(200);
    for (const p of ['/healthz', '/ready', '/config_dump', '/stats/prometheus']) expect(r.body).toContain(p);
  });

  it('answers 404 for other paths and 405 for other methods', async () => {
    expect((await call(port, '/nope')).status).toBe(404);
    expect((await call(port, '/stats')).status).toBe(404);
    const post = await call(port, '/healthz', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    expect((await call(port, '/config_dump', 'DELETE')).status).toBe(405);
    const head = await call(port, '/healthz', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it('fails to start on a port in use and closes cleanly', async () => {
    await expect(startAdminServer({
      address: '127.0.0.1', port, ready: () => ({ ready: true }), configDump: () => ({}), metrics: registryMetrics(registry),
    })).rejects.toMatchObject({ code: 'EADDRINUSE' });

    const other = await startAdminServer({
      address: '127.0.0.1', port: 0, ready: () => ({ ready: true }), configDump: () => ({}), metrics: registryMetrics(registry),
    });
    const p = other.address().port;
    expect((await call(p, '/healthz')).status).toBe(200);
    await other.close();
    await other.close();
    await expect(call(p, '/healthz')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('cluster metrics (child process, built dist)', () => {
  it('serves the aggregate of every worker from the primary', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-cluster-'));
    const url = (p: string) => JSON.stringify(pathToFileURL(join(here, p)).href);
    try {
      const script = join(dir, 'cluster.mjs');
      writeFileSync(script, `
        import cluster from 'node:cluster';
        const { createTelemetry } = await import(${url('../dist/telemetry/index.js')});
        const { startAdminServer, clusterMetrics, clusterWorkerMetrics } = await import(${url('../dist/admin/index.js')});
        const { Registry } = await import(${url('../../node_modules/prom-client/index.js')});
        if (cluster.isPrimary) {
          const workers = [cluster.fork(), cluster.fork()];
          await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
          const admin = await startAdminServer({ address: '127.0.0.1', port: 0, ready: () => ({ ready: true }),
            configDump: () => ({}), metrics: clusterMetrics() });
          const res = await fetch('http://127.0.0.1:' + admin.address().port + '/stats/prometheus');
          process.stdout.write(String(res.status) + '\\n' + await res.text());
          for (const w of workers) w.kill();
          await admin.close();
          process.exit(0);
        } else {
          const registry = new Registry();
          const t = createTelemetry({ registry, accessLog: 'off', level: 'silent' });
          const n = cluster.worker.id;
          for (let i = 0; i < n; i++) {
            t.request({ direction: 'inbound', protocol: 'h2', method: 'GET', authority: 'a', path: '/', status: 200,
              durationMs: 5, requestId: 'r', source: { address: '10.0.0.1', port: 1 }, destination: { address: '10.0.0.2', port: 2 },
              service: 'reviews.default', attempts: 1, bytesReceived: 10, bytesSent: 100 });
          }
          t.filterCounter('ratelimit', 'allowed', n);
          t.reloadResult(true);
          clusterWorkerMetrics(registry);
          process.send('up');
        }
      `);
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      clearTimeout(timer);
      expect(err).toBe('');
      expect(code).toBe(0);
      const [status, ...rest] = out.split('\n');
      const body = rest.join('\n');
      expect(status).toBe('200');
      // Worker 1 saw 1 request, worker 2 saw 2: summed.
      expect(body).toMatch(/^ambit_requests_total\{[^}]*destination_service="reviews\.default"[^}]*\} 3$/m);
      expect(body).toMatch(/^ambit_request_duration_seconds_count\{[^}]*\} 3$/m);
      expect(body).toMatch(/^ambit_response_bytes_total\{[^}]*\} 300$/m);
      expect(body).toMatch(/^ambit_filter_counter_total\{filter="ratelimit",name="allowed"\} 3$/m);
      // Every worker applied the one reload: the largest count, not the sum.
      expect(body).toMatch(/^ambit_config_reloads_total\{result="success"\} 1$/m);
      expect(body).toMatch(/^ambit_config_last_reload_success_timestamp_seconds \d+(\.\d+)?$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
