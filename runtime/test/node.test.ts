import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { runNode, type RunningNode } from '@ambit/runtime';
import { buildFixtures, HELLO_DIR, MISBEHAVE_DIR, REPO } from './fixtures.js';
import { until } from './support/telemetry.js';
import { nativePathSkip } from './support/native-path.js';
import { freePort, httpUpstream, type Upstream } from './support/upstreams.js';

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

function request(port: number, p: string, headers: Record<string, string> = {}, agent: http.Agent | false = false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, headers, agent }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function meshYaml(o: { upstreamPort: number; header: string; filterRef: string; ports?: { outbound: number; inbound: number; admin: number } }): string {
  return `
node: test-node
trustDomain: mesh.test
proxy:
  outbound: { address: 127.0.0.1, port: ${o.ports?.outbound ?? 15001}, target: "api.test:80" }
  inbound: { address: 127.0.0.1, port: ${o.ports?.inbound ?? 15006} }
  admin: { address: 127.0.0.1, port: ${o.ports?.admin ?? 15000} }
workloads:
  - { name: client, namespace: test, serviceAccount: client-sa, address: 127.0.0.1 }
services:
  - name: api
    namespace: test
    vip: 10.96.9.9
    ports: [{ port: 80, targetPort: ${o.upstreamPort}, protocol: http }]
    endpoints: [{ address: 127.0.0.2 }]
bindings:
  - name: greet
    target: { service: api.test }
    direction: outbound
    filters:
      - ref: ${o.filterRef}
        config: { header: ${o.header}, denyPathPrefixes: [/admin] }
`;
}

describe('ambit run: a node proxy from a mesh config', () => {
  let dir: string;
  let upstream: Upstream;
  let node: RunningNode;
  let outbound: number;
  let admin: number;
  let configPath: string;

  beforeAll(async () => {
    await buildFixtures();
    dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-node-'));
    await cp(HELLO_DIR, path.join(dir, 'greeter'), { recursive: true, filter: (src) => !src.includes('node_modules') });
    upstream = await httpUpstream('api');
    // The upstream listens on 127.0.0.1; the endpoint is 127.0.0.2 (also loopback) so that
    // the source workload (127.0.0.1) and the endpoint differ.
    configPath = path.join(dir, 'mesh.yaml');
    await writeFile(configPath, meshYaml({ upstreamPort: upstream.port, header: 'x-greeting-v1', filterRef: './greeter' }).replace('127.0.0.2', '127.0.0.1'));
    node = await runNode({ config: configPath, accessLog: 'off', logLevel: 'silent', ports: { outbound: 0, inbound: 0, admin: 0 } });
    outbound = node.proxy.addresses().outbound!.port;
    admin = node.admin!.address().port;
  });

  afterAll(async () => {
    await node?.close();
    await upstream?.close();
  });

  it('routes through the filter bound in the config, with the source workload\'s identity', async () => {
    const r = await request(outbound, '/items');
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body) as { headers: Record<string, string> };
    expect(seen.headers['x-greeting-v1']).toBe('hello from client');
    expect((await request(outbound, '/admin')).status).toBe(403);
  });

  it('serves /healthz, /ready, /config_dump with filter sha256s, and Prometheus metrics', async () => {
    expect((await request(admin, '/healthz')).status).toBe(200);
    expect((await request(admin, '/ready')).status).toBe(200);
    const dump = JSON.parse((await request(admin, '/config_dump')).body) as {
      engine: string; dataPath: { kind: string }; filters: Array<{ sha256: string; name: string }>; config: { trustDomain: string };
    };
    const manifest = JSON.parse(await readFile(path.join(dir, 'greeter/dist/manifest.json'), 'utf8')) as { sha256: string };
    // The defaults (engine and dataPath auto): the native data path and wasmtime where the addon is built.
    expect(dump.engine).toBe(nativePathSkip ? 'v8' : 'wasmtime');
    expect(dump.dataPath.kind).toBe(nativePathSkip ? 'node' : 'native');
    expect(dump.config.trustDomain).toBe('mesh.test');
    expect(dump.filters).toEqual([expect.objectContaining({ name: 'hello', sha256: manifest.sha256 })]);
    expect((await request(outbound, '/counted')).status).toBe(200);
    let metrics = '';
    // The access record is written when the response is done, just after the client has it.
    for (let i = 0; i < 50 && !/ambit_requests_total\{/.test(metrics); i++) {
      metrics = (await request(admin, '/stats/prometheus')).body;
      if (!/ambit_requests_total\{/.test(metrics)) await new Promise((r) => setTimeout(r, 20));
    }
    expect(metrics).toMatch(/ambit_requests_total\{(?=[^}]*destination_service="api.test")(?=[^}]*response_code="200")(?=[^}]*source_workload="client")[^}]*\} [1-9]/);
    expect(metrics).toMatch(/ambit_filter_calls_total\{filter="hello",phase="requestHeaders",outcome="ok"\} [1-9]/);
  });

  it('reloads a changed config under load without failing a request; in-flight requests finish', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const statuses: number[] = [];
    const headersSeen = new Set<string>();
    let stop = false;
    const deadline = Date.now() + 20_000;
    const worker = async () => {
      // Bounded: stops when told (once requests on the new config came back), or after 20 s.
      // Not by a count: the native data path serves thousands before the watcher reloads.
      while (!stop && Date.now() < deadline) {
        const r = await request(outbound, `/load/${statuses.length}`, {}, agent);
        statuses.push(r.status);
        const h = JSON.parse(r.body) as { headers: Record<string, string> };
        for (const k of Object.keys(h.headers)) if (k.startsWith('x-greeting')) headersSeen.add(k);
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, worker));
    await until(() => statuses.length > 50, 'load to start', 10_000);
    const before = node.state.version;
    await writeFile(configPath, meshYaml({ upstreamPort: upstream.port, header: 'x-greeting-v2', filterRef: './greeter' }).replace('127.0.0.2', '127.0.0.1'));
    await until(() => node.state.version > before, 'the watcher to reload', 10_000);
    // On the same keep-alive connections: a reload applies to their next requests.
    await until(() => headersSeen.has('x-greeting-v2'), 'requests on the new config', 10_000);
    stop = true;
    await load;
    agent.destroy();
    expect(statuses.length).toBeGreaterThan(50);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(headersSeen).toEqual(new Set(['x-greeting-v1', 'x-greeting-v2']));
  });

  it('keeps the old config serving when a reload fails validation, and says why', async () => {
    const good = await readFile(configPath, 'utf8');
    await writeFile(configPath, good.replace('port: 80, targetPort', 'port: 99999, targetPort'));
    const ok = await node.reload();
    expect(ok).toBe(false);
    expect((await request(outbound, '/still')).status).toBe(200);
    const metrics = (await request(admin, '/stats/prometheus')).body;
    expect(metrics).toMatch(/ambit_config_reloads_total\{result="failure"\} [1-9]/);
    await writeFile(configPath, good);
    expect(await node.reload()).toBe(true);
  });

  it('swaps in a filter whose .wasm was replaced on disk', async () => {
    const before = node.state.version;
    // Replace the greeter's component (and manifest) with another filter's, as a rebuild would.
    const dist = path.join(dir, 'greeter/dist');
    await cp(path.join(MISBEHAVE_DIR, 'dist/manifest.json'), path.join(dist, 'manifest.json.new'));
    await cp(path.join(MISBEHAVE_DIR, 'dist/filter.wasm'), path.join(dist, 'filter.wasm.new'));
    await cp(path.join(MISBEHAVE_DIR, 'dist/schema.json'), path.join(dist, 'schema.json'));
    // The new filter's schema has no `header` property; give it a config it accepts.
    const cfg = await readFile(configPath, 'utf8');
    await rename(path.join(dist, 'manifest.json.new'), path.join(dist, 'manifest.json'));
    await rename(path.join(dist, 'filter.wasm.new'), path.join(dist, 'filter.wasm'));
    await writeFile(configPath, cfg.replace(/config: \{ header: [^}]*\}/, 'config: { tag: swapped }'));
    await until(() => node.state.version > before && [...node.state.resolved.filters.values()].some((f) => f.binding.name === 'misbehave'), 'the new filter to load', 15_000);
    const r = await request(outbound, '/after-swap');
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-chain']).toBe('swapped');
  });
});

describe('ambit run --workers 2', () => {
  it('shares the listeners between two worker processes and sums their metrics', async () => {
    await buildFixtures();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-cluster-'));
    const upstream = await httpUpstream('api');
    const ports = { outbound: await freePort(), inbound: await freePort(), admin: await freePort() };
    const config = path.join(dir, 'mesh.yaml');
    await writeFile(config, meshYaml({ upstreamPort: upstream.port, header: 'x-cluster', filterRef: path.relative(dir, HELLO_DIR), ports }).replace('127.0.0.2', '127.0.0.1'));
    const child = spawn(process.execPath, [path.join(REPO, 'runtime/dist/cli.js'), 'run', '--config', config, '--workers', '2', '--access-log', 'off', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    try {
      const readyBy = Date.now() + 60_000;
      for (;;) {
        const r = await request(ports.admin, '/ready').catch(() => undefined);
        if (r?.status === 200) break;
        if (Date.now() > readyBy || child.exitCode !== null) throw new Error(`cluster did not become ready: ${stderr}`);
        await new Promise((res) => setTimeout(res, 200));
      }
      const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => request(ports.outbound, `/c/${i}`)));
      expect(replies.every((r) => r.status === 200 && r.body.includes('x-cluster'))).toBe(true);
      const metrics = (await request(ports.admin, '/stats/prometheus')).body;
      // Workers asked for: each serves on the node data path (the native one uses threads in one process).
      const dump = JSON.parse((await request(ports.admin, '/config_dump')).body) as { workers: number; dataPath: { kind: string; asked: string; reason?: string } };
      expect(dump.workers).toBe(2);
      expect(dump.dataPath).toMatchObject({ kind: 'node', asked: 'dataPath: auto' });
      if (!nativePathSkip) expect(dump.dataPath.reason).toContain('2 node:cluster workers were asked for');
      const total = [...metrics.matchAll(/^ambit_requests_total\{[^}]*destination_service="api.test"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
      expect(total).toBe(40);
    } finally {
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      await upstream.close();
      expect(code).toBe(0);
    }
  });
});
