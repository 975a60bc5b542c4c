/**
 * The native data path (`proxy.dataPath: native`): real sockets through the Rust listeners,
 * filters (the example `hello`, built by the real toolchain) run inline on wasmtime.
 * HTTP/1.1 keep-alive, retries, an h2c client to an HTTP/1.1-only service, a 3 MB curl
 * upload with `Expect: 100-continue`, server-sent events event by event, L4, and the
 * policy-bypass attempts: each asserts the upstream never saw a request the filters did not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { runNode, type RunningNode } from '@ambit/runtime';
import { buildFixtures, HELLO_DIR, MISBEHAVE_DIR, throwingFilterMesh } from './fixtures.js';
import { nativePathSkip as skip, startNativePath, type RunningNativePath } from './support/native-path.js';
import { until, type RecordingTelemetry } from './support/telemetry.js';
import { freePort, httpUpstream, type Upstream } from './support/upstreams.js';
import { runUntilConfigDump } from './support/ambit-run.js';
const run = promisify(execFile);

/** Writes raw bytes and reads until the peer closes or `ms` pass; answers everything read. */
function raw(port: number, bytes: string, ms = 1_500): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    const done = () => { clearTimeout(t); s.destroy(); resolve(out); };
    const t = setTimeout(done, ms);
    s.on('data', (d: Buffer) => { out += d.toString('latin1'); });
    s.on('close', done);
    s.on('error', done);
    s.write(bytes);
  });
}

function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
}

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

function get(port: number, p: string, headers: Record<string, string> = {}, agent: http.Agent | false = false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, headers, agent }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function meshYaml(o: { upstream: number; tcpEcho: number; sse: number }): string {
  return `
node: test-node
trustDomain: mesh.test
proxy:
  engine: wasmtime
  dataPath: native
  native: { threads: 2 }
  wasmtime: { threads: 1 }
workloads:
  - { name: client, namespace: test, serviceAccount: client-sa, address: 127.0.0.1 }
services:
  - name: api
    namespace: test
    vip: 10.96.9.9
    ports: [{ port: 80, targetPort: ${o.upstream}, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
  - name: other
    namespace: test
    vip: 10.96.9.10
    ports: [{ port: 80, targetPort: ${o.upstream}, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
  - name: tcp
    namespace: test
    vip: 10.96.9.11
    ports: [{ port: 9000, targetPort: ${o.tcpEcho}, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1 }]
  - name: events
    namespace: test
    vip: 10.96.9.12
    ports: [{ port: 80, targetPort: ${o.sse}, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
bindings:
  - name: policy
    target: { service: api.test }
    direction: outbound
    filters:
      - ref: ${HELLO_DIR}
        config: { header: x-hello, denyPathPrefixes: [/admin], retryOn: [503], maxAttempts: 3 }
  - name: inbound-policy
    target: { workload: client.test }
    direction: inbound
    filters:
      - ref: ${HELLO_DIR}
        config: { header: x-inbound-hello, denyPathPrefixes: [/admin], retryOn: [] }
`;
}

describe.skipIf(skip)('native data path', () => {
  let dir: string;
  let upstream: Upstream;
  let echo: net.Server;
  let sse: http.Server;
  let path0: RunningNativePath;
  let telemetry: RecordingTelemetry;
  let out: number;
  let tcpOut: number;
  let sseOut: number;
  let inbound: number;

  beforeAll(async () => {
    await buildFixtures();
    dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-native-path-'));
    upstream = await httpUpstream('api');
    echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    sse = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n');
      // The second event only once the test has seen the first (it asks with /ack).
      sseAck = () => { res.end('data: two\n\n'); };
    });
    let sseAck: () => void = () => {};
    sseRelease = () => sseAck();
    await new Promise<void>((r) => sse.listen(0, '127.0.0.1', () => r()));
    path0 = await startNativePath(meshYaml({ upstream: upstream.port, tcpEcho: (echo.address() as AddressInfo).port, sse: (sse.address() as AddressInfo).port }), [
      { name: 'out', target: { address: '10.96.9.9', port: 80 } },
      { name: 'tcp', target: { address: '10.96.9.11', port: 9000 } },
      { name: 'sse', target: { address: '10.96.9.12', port: 80 } },
      // Inbound to the workload client (127.0.0.1, served by the upstream's port).
      { name: 'in', direction: 'inbound', target: { address: '127.0.0.1', port: upstream.port } },
    ]);
    telemetry = path0.telemetry;
    ({ out, tcp: tcpOut, sse: sseOut, in: inbound } = path0.ports as Record<'out' | 'tcp' | 'sse' | 'in', number>);
  }, 300_000);

  let sseRelease: () => void = () => {};

  afterAll(async () => {
    await path0?.close();
    await upstream?.close();
    echo?.close();
    sse?.closeAllConnections();
    sse?.close();
  });

  const sawPath = (p: string) => upstream.seen.some((s) => s.path === p);

  it('serves HTTP/1.1 keep-alive through the filter, inline, with the source workload', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 5; i++) {
      const r = await get(out, `/items/${i}`, {}, agent);
      expect(r.status).toBe(200);
      expect((JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-hello']).toBe('hello from client');
      expect(r.headers['x-ambit-attempts']).toBe('1');
    }
    agent.destroy();
    await until(() => telemetry.requests.filter((r) => r.path.startsWith('/items/')).length === 5, 'five request records');
    const rec = telemetry.requests.find((r) => r.path === '/items/0')!;
    expect(rec).toMatchObject({ direction: 'outbound', protocol: 'http/1.1', status: 200, service: 'api.test', attempts: 1, source: { workload: 'client' } });
    expect(rec.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('retries a 503 with the body buffered, and answers the filter\'s 403 without going upstream', async () => {
    const r = await get(out, '/flaky/2');
    expect(r.status).toBe(200);
    expect(r.headers['x-ambit-attempts']).toBe('3');
    const denied = await get(out, '/admin/x');
    expect(denied.status).toBe(403);
    expect(denied.body).toContain('forbidden by policy hello');
    expect(sawPath('/admin/x')).toBe(false);
  });

  it('never lets the upstream see a request the filters did not (policy-bypass attempts)', async () => {
    const before = upstream.seen.length;
    const attempts: Array<[string, string]> = [
      ['unknown method, then pipelined', 'FOO /admin HTTP/1.1\r\nhost: api.test\r\n\r\nGET /admin HTTP/1.1\r\nhost: api.test\r\n\r\n'],
      ['lower-case method', 'get /admin HTTP/1.1\r\nhost: api.test\r\n\r\n'],
      ['leading CRLF', '\r\nGET /admin HTTP/1.1\r\nhost: api.test\r\n\r\n'],
      ['absolute-form', 'GET http://api.test/admin HTTP/1.1\r\nhost: api.test\r\n\r\n'],
      ['dot segments', 'GET /./admin HTTP/1.1\r\nhost: api.test\r\n\r\nGET /public/../admin HTTP/1.1\r\nhost: api.test\r\n\r\n'],
      ['encoded dot segments', 'GET /public/%2e%2e/admin HTTP/1.1\r\nhost: api.test\r\n\r\n'],
      ['percent-encoding', 'GET /%61dmin HTTP/1.1\r\nhost: api.test\r\n\r\n'],
      ['merged slashes', 'GET //admin HTTP/1.1\r\nhost: api.test\r\n\r\n'],
      ['h2c upgrade', 'GET /admin HTTP/1.1\r\nhost: api.test\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n'],
      ['refused upgrade, then pipelined', 'GET /admin HTTP/1.1\r\nhost: api.test\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nGET /admin HTTP/1.1\r\nhost: api.test\r\n\r\n'],
    ];
    for (const [what, bytes] of attempts) {
      const answer = await raw(out, bytes, 800);
      const codes = statuses(answer);
      expect(codes.length, `${what}: ${answer}`).toBeGreaterThan(0);
      for (const c of codes) expect([400, 403], `${what}: ${answer}`).toContain(c);
    }
    const leaked = upstream.seen.slice(before).filter((s) => /admin/i.test(s.path));
    expect(leaked).toEqual([]);
  });

  it('answers 400 to a duplicate Host, and routes by Host only outbound', async () => {
    const dup = await raw(out, 'GET /items HTTP/1.1\r\nhost: api.test\r\nhost: other.test\r\n\r\n', 800);
    expect(statuses(dup)).toEqual([400]);
    // Outbound, Host names another service: its route (no filter there, so no x-hello).
    const rerouted = await get(out, '/via-host', { host: 'other.test' });
    expect(rerouted.status).toBe(200);
    expect((JSON.parse(rerouted.body) as { headers: Record<string, string> }).headers['x-hello']).toBeUndefined();
    // Inbound, Host naming another service does not escape the workload's inbound filters.
    const before = upstream.seen.length;
    const inboundAdmin = await get(inbound, '/admin', { host: 'other.test' });
    expect(inboundAdmin.status).toBe(403);
    const ok = await get(inbound, '/in', { host: 'other.test' });
    expect(ok.status).toBe(200);
    expect((JSON.parse(ok.body) as { headers: Record<string, string> }).headers['x-inbound-hello']).toBe('hello from client');
    expect(upstream.seen.slice(before).map((s) => s.path)).toEqual(['/in']);
  });

  it('serves an h2c client against an HTTP/1.1-only service (the port says http)', async () => {
    const session = http2.connect(`http://127.0.0.1:${out}`);
    try {
      const one = (i: number) => new Promise<{ status: number; body: string }>((resolve, reject) => {
        const s = session.request({ ':path': `/h2/${i}`, ':authority': 'api.test' });
        let body = '';
        let status = 0;
        s.on('response', (h) => { status = Number(h[':status']); });
        s.on('data', (d: Buffer) => { body += d.toString(); });
        s.on('end', () => resolve({ status, body }));
        s.on('error', reject);
        s.end();
      });
      const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => one(i)));
      for (const r of replies) {
        expect(r.status).toBe(200);
        expect((JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-hello']).toBe('hello from client');
      }
    } finally {
      session.close();
    }
    expect(upstream.seen.filter((s) => s.path.startsWith('/h2/')).length).toBe(10);
  });

  it('takes a 3 MB curl upload with Expect: 100-continue', async () => {
    const file = path.join(dir, 'upload.bin');
    await writeFile(file, Buffer.alloc(3 * 1024 * 1024, 'a'));
    const { stdout } = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Expect: 100-continue', '-H', 'host: api.test', '--data-binary', `@${file}`, `http://127.0.0.1:${out}/upload`], { timeout: 30_000 });
    expect(stdout).toBe('200');
    const seen = upstream.seen.find((s) => s.path === '/upload')!;
    expect(seen.body.length).toBe(3 * 1024 * 1024);
    expect(seen.headers.some(([k]) => k === 'expect')).toBe(false);
  });

  it('streams server-sent events event by event', async () => {
    const first = await new Promise<string>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: sseOut, path: '/events', headers: { host: 'events.test' } }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
          if (text.includes('data: one') && !text.includes('two')) {
            resolve(text);
            sseRelease();
          }
        });
      });
      req.on('error', reject);
    });
    expect(first).toContain('data: one');
    expect(first).not.toContain('data: two');
  });

  it('splices L4 on a tcp port', async () => {
    const echoed = await new Promise<string>((resolve, reject) => {
      const s = net.connect(tcpOut, '127.0.0.1', () => s.end('not http at all\x00\x01'));
      let got = '';
      s.on('data', (d: Buffer) => { got += d.toString('latin1'); });
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    expect(echoed).toBe('not http at all\x00\x01');
    await until(() => telemetry.connections.some((c) => c.mode === 'l4' && c.service === 'tcp.test' && c.bytesReceived === 17), 'the L4 connection record');
  });
});

describe.skipIf(skip)('a throwing filter on the native data path', () => {
  let upstream: Upstream;
  let running: RunningNativePath;

  beforeAll(async () => {
    await buildFixtures();
    upstream = await httpUpstream('api');
    running = await startNativePath(`node: test-node\n${throwingFilterMesh(upstream.port)}`, [{ name: 'out', target: { address: '10.96.9.9', port: 80 } }]);
  }, 300_000);

  afterAll(async () => {
    await running?.close();
    await upstream?.close();
  });

  it('answers 503 naming the filter, and reports the exception at the TypeScript line of the throw', async () => {
    const r = await get(running.ports.out!, '/quiet/x');
    expect(r.status).toBe(503);
    expect(r.body).toBe('filter quiet failed (trap)\n');
    expect(upstream.seen.length).toBe(0);
    const src = (await readFile(path.join(MISBEHAVE_DIR, 'src/filter.ts'), 'utf8')).split('\n');
    const line = src.findIndex((l) => l.includes("case 'throw': throw new Error")) + 1;
    await until(() => running.telemetry.failures.some((f) => f.filter === 'quiet'), 'the failure record');
    const failure = running.telemetry.failures.find((f) => f.filter === 'quiet')!;
    expect(failure).toMatchObject({ kind: 'trap', policy: 'fail-closed' });
    expect(failure.message).toContain('misbehave quiet throws on purpose');
    expect(failure.message).toContain(`src/filter.ts:${line}:`);
    expect(failure.message).not.toMatch(/filter\.js:\d+/);
  });
});

describe.skipIf(skip)('ambit run with proxy.dataPath native', () => {
  let dir: string;
  let upstream: Upstream;
  let node: RunningNode;

  beforeAll(async () => {
    await buildFixtures();
    dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-native-run-'));
    upstream = await httpUpstream('api');
    const config = path.join(dir, 'mesh.yaml');
    await writeFile(config, meshYaml({ upstream: upstream.port, tcpEcho: 1, sse: 1 }).replace('  engine: wasmtime\n', '  engine: wasmtime\n  outbound: { address: 127.0.0.1, port: 15001, target: "10.96.9.9:80" }\n'));
    node = await runNode({ config, accessLog: 'off', logLevel: 'silent', ports: { outbound: 0, inbound: 0, admin: 0 } });
  }, 300_000);

  afterAll(async () => {
    await node?.close();
    await upstream?.close();
  });

  it('serves through the filters and reports Prometheus metrics from the native records', async () => {
    const outbound = node.proxy.addresses().outbound!.port;
    expect((await get(outbound, '/metered')).status).toBe(200);
    expect((await get(outbound, '/admin')).status).toBe(403);
    const admin = node.admin!.address().port;
    let metrics = '';
    for (let i = 0; i < 100 && !/ambit_requests_total\{[^}]*response_code="403"/.test(metrics); i++) {
      await new Promise((r) => setTimeout(r, 50));
      metrics = (await get(admin, '/stats/prometheus')).body;
    }
    expect(metrics).toMatch(/ambit_requests_total\{(?=[^}]*destination_service="api.test")(?=[^}]*response_code="200")[^}]*\} [1-9]/);
    expect(metrics).toMatch(/ambit_filter_calls_total\{filter="hello",phase="requestHeaders",outcome="ok"\} [1-9]/);
    // Counted natively (no request records: the access log is off): the histograms and the filter's own counter too.
    expect(metrics).toMatch(/ambit_request_duration_seconds_count\{(?=[^}]*response_code="403")[^}]*\} [1-9]/);
    expect(metrics).toMatch(/ambit_filter_call_duration_seconds_count\{(?=[^}]*filter="hello")(?=[^}]*phase="requestHeaders")[^}]*\} [1-9]/);
    expect(metrics).toMatch(/ambit_filter_counter_total\{(?=[^}]*filter="hello")(?=[^}]*"denied")[^}]*\} [1-9]/);
    const dump = JSON.parse((await get(admin, '/config_dump')).body) as { dataPath: { kind: string; threads: number } };
    expect(dump.dataPath).toMatchObject({ kind: 'native', threads: 2 });
  });
});

describe.skipIf(skip)('proxy.dataPath auto (the default)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-auto-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  type Dump = { workers?: number; engine: string; dataPath: { kind: string; asked: string; reason?: string; threads?: number } };

  /** `ambit run` with no dataPath, engine or workers set: what it chose, and its one log line saying so. */
  async function runDefault(name: string, extra: string, args: string[] = []): Promise<{ dump: Dump; line: string }> {
    const ports = { outbound: await freePort(), inbound: await freePort(), admin: await freePort(), hbone: await freePort() };
    const config = path.join(dir, `${name}.yaml`);
    await writeFile(config, `node: n1
trustDomain: mesh.test
proxy:
  outbound: { address: 127.0.0.1, port: ${ports.outbound}, target: "127.0.0.1:9" }
  inbound: { address: 127.0.0.1, port: ${ports.inbound} }
  admin: { address: 127.0.0.1, port: ${ports.admin} }
  hbone: { address: 127.0.0.1, port: ${ports.hbone} }
${extra}`);
    const r = await runUntilConfigDump<Dump>(config, ports.admin, { args });
    expect(r.dump, r.output).toBeDefined();
    const lines = r.output.split('\n').filter((l) => l.includes('data path:'));
    expect(lines, r.output).toHaveLength(1);
    return { dump: r.dump!, line: lines[0]! };
  }

  it('runs the native data path, in one process, for a config without identity', async () => {
    const { dump, line } = await runDefault('plain', '');
    expect(dump.workers).toBeUndefined();
    expect(dump.engine).toBe('wasmtime');
    expect(dump.dataPath).toMatchObject({ kind: 'native', asked: 'dataPath: auto' });
    expect(dump.dataPath.reason).toBeUndefined();
    expect(dump.dataPath.threads).toBeGreaterThan(0);
    expect(line).toContain('data path: native (dataPath: auto)');
  }, 90_000);

  it('runs the native data path for a config with identity (mTLS between nodes is served there only)', async () => {
    const { dump, line } = await runDefault('identity', `identity:\n  ca: { dir: ${path.join(dir, 'ca')} }\n`, ['--workers', '1']);
    expect(dump.engine).toBe('wasmtime');
    expect(dump.dataPath).toMatchObject({ kind: 'native', asked: 'dataPath: auto' });
    expect(line).toContain('data path: native (dataPath: auto)');
  }, 90_000);

  it('stops a config with identity that asks for what only the node data path serves, saying why', async () => {
    const ports = { admin: await freePort() };
    const config = path.join(dir, 'identity-node.yaml');
    await writeFile(config, `node: n1\nproxy: { admin: { address: 127.0.0.1, port: ${ports.admin} }, dataPath: node }\nidentity:\n  ca: { dir: ${path.join(dir, 'ca')} }\n`);
    const asNode = await runUntilConfigDump(config, ports.admin);
    expect(asNode.dump).toBeUndefined();
    expect(asNode.code).not.toBe(0);
    expect(asNode.output).toMatch(/AMBIT_ERR_CONFIG_INVALID.*the config sets identity \(mTLS between nodes, HBONE\), which only the native data path serves, and dataPath: node asks for the node data path/s);
    await writeFile(config, `node: n1\nproxy: { admin: { address: 127.0.0.1, port: ${ports.admin} } }\nidentity:\n  ca: { dir: ${path.join(dir, 'ca')} }\n`);
    const workers = await runUntilConfigDump(config, ports.admin, { args: ['--workers', '2'] });
    expect(workers.dump).toBeUndefined();
    expect(workers.output).toMatch(/only the native data path serves, and it cannot serve this node: 2 node:cluster workers were asked for/);
  }, 90_000);
});
