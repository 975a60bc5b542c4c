/**
 * Proxy throughput and latency, side by side in one run (`npm run bench`, after the
 * filter benchmarks): direct to the upstream, Ambit L4 splice, Ambit L7 without
 * filters, Ambit L7 with a chain of 3 filters (on V8, and on wasmtime with pooled and with
 * per-request instances), with the six built-in filters (on V8 and wasmtime), and nginx
 * `proxy_pass` when installed. For the native path: the proxy's resident memory after each
 * run, and the latency at a fixed 1,000 req/s (`fixed-rate.ts`) direct and through the six
 * built-ins.
 *
 * The proxy under test (Ambit with one worker, or nginx with one worker) is pinned to
 * core 0; the load generator (wrk, HTTP/1.1 keep-alive, 50 connections) and the upstream
 * (nginx `return 200`, or a Node server without nginx) share core 1. Every load run is
 * bounded by wrk's duration.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, truncate, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadNative } from '../../filters/wasmtime/native.js';
import { BUILTIN_CHAIN, ensureBuiltinFilters } from '../builtins.js';
import { ensureBuilt } from '../ensure-built.js';
import { FIXED_RATE, fixedRate, type RateResult } from './fixed-rate.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '../../../..');
const CLI = path.join(REPO, 'runtime/dist/cli.js');
const CONNECTIONS = 50;

export interface Result {
  name: string;
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  /** Resident memory of the proxy process (and its children) after the load, MiB. */
  rssMiB?: number;
}

/** VmRSS of a process and its direct children, MiB (Linux); undefined when unreadable. */
async function residentMiB(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  const rss = async (p: number): Promise<number> => {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${p}/status`, 'utf8').catch(() => ''));
    return m ? Number(m[1]) / 1024 : 0;
  };
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean).map(Number);
  let total = await rss(pid);
  for (const c of children) total += await rss(c);
  return total > 0 ? total : undefined;
}

export function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A loopback TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

export function pinned(core: number, cmd: string, args: string[]): ChildProcess {
  const canPin = os.availableParallelism() > 1 && has('taskset');
  return canPin ? spawn('taskset', ['-c', String(core), cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export async function waitHttp(port: number, p = '/', ms = 30_000, host = '127.0.0.1'): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      http.get({ host, port, path: p, agent: false }, (res) => { res.resume(); resolve((res.statusCode ?? 0) < 500); }).on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing answered on ${host}:${port}${p} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), 5_000);
    p.once('exit', () => { clearTimeout(t); resolve(); });
    p.kill('SIGTERM');
  });
}

function unitMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

export function wrk(name: string, port: number, DURATION_S: number, host = '127.0.0.1'): Result {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${DURATION_S}s`, '--latency', `http://${host}:${port}/`];
  const canPin = os.availableParallelism() > 1 && has('taskset');
  const out = execFileSync(canPin ? 'taskset' : 'wrk', canPin ? ['-c', '1', 'wrk', ...args] : args, { encoding: 'utf8', timeout: (DURATION_S + 30) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
  const p50 = unitMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
  const p99 = unitMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0);
  return { name, rps, p50ms: p50, p99ms: p99, errors };
}

/** nginx (or Node) answering `hello from upstream`; with nginx, `GET /bulk` sends `BULK_BYTES` (sendfile). */
export async function startUpstream(dir: string, host = '127.0.0.1'): Promise<{ port: number; proc: ChildProcess; kind: string }> {
  const port = await freePort();
  if (has('nginx')) {
    const conf = path.join(dir, 'upstream.conf');
    const bulk = path.join(dir, 'bulk.bin');
    await writeFile(bulk, '');
    await truncate(bulk, BULK_BYTES);
    // nginx's workers run as an unprivileged user: the file and its folder must be readable to them.
    await chmod(bulk, 0o644);
    await chmod(dir, 0o755);
    await writeFile(conf, `worker_processes 1; daemon off; pid ${dir}/upstream.pid; error_log ${dir}/upstream-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; sendfile on;
  server { listen ${host}:${port}; location = /bulk { default_type application/octet-stream; alias ${bulk}; } location / { return 200 "hello from upstream\\n"; } } }
`);
    const proc = pinned(1, 'nginx', ['-p', dir, '-c', conf, '-e', `${dir}/upstream-error.log`]);
    await waitHttp(port, '/', 30_000, host);
    return { port, proc, kind: 'nginx return 200' };
  }
  const script = `require('http').createServer((q, s) => { s.writeHead(200, { 'content-length': 20 }); s.end('hello from upstream\\n'); }).listen(${port}, '${host}');`;
  const proc = pinned(1, process.execPath, ['-e', script]);
  await waitHttp(port, '/', 30_000, host);
  return { port, proc, kind: 'node:http hello' };
}

/** Size of the upstream's `/bulk` response. */
export const BULK_BYTES = 1 << 30;

type Engine = 'v8' | 'wasmtime' | 'wasmtime-per-request' | 'native';

/** The node and proxy part of a bench mesh config: listeners and engine. */
function proxyYaml(o: { listen: number; inbound: number; admin: number; engine: Engine }): string {
  return `node: bench
proxy:
  outbound: { address: 127.0.0.1, port: ${o.listen}, target: "10.96.0.1:80" }
  inbound: { address: 127.0.0.1, port: ${o.inbound} }
  admin: { address: 127.0.0.1, port: ${o.admin} }
  engine: ${o.engine === 'v8' ? 'v8' : 'wasmtime'}
  wasmtime: { threads: 1 }
  ${o.engine === 'native' ? 'dataPath: native\n  native: { threads: 1 }' : 'dataPath: node'}`;
}

function meshConfig(o: { listen: number; inbound: number; admin: number; upstream: number; protocol: 'auto' | 'http'; filters: number | 'builtins'; engine: Engine }): string {
  if (o.filters === 'builtins') return builtinsConfig(o);
  const filters = Array.from({ length: o.filters }, (_, i) => `      - ref: ${path.join(REPO, 'examples/filters/hello')}
        name: hello-${i + 1}
        config: { header: x-bench-${i + 1}, denyPathPrefixes: [/admin], retryOn: [] }${o.engine === 'wasmtime-per-request' ? '\n        instances: per-request' : ''}`).join('\n');
  return `${proxyYaml(o)}
services:
  - name: up
    namespace: bench
    vip: 10.96.0.1
    ports: [{ port: 80, targetPort: ${o.upstream}, protocol: ${o.protocol} }]
    endpoints: [{ address: 127.0.0.1 }]
${o.filters > 0 ? `bindings:
  - name: chain
    target: { service: up.bench }
    direction: outbound
    filters:
${filters}` : ''}
`;
}

/**
 * The six built-in filters in chain order (see ../builtins.ts), on a service whose one
 * endpoint is a workload (wrk's address, 127.0.0.1, so requests carry its identity) with
 * two subsets for traffic-split.
 */
function builtinsConfig(o: { listen: number; inbound: number; admin: number; upstream: number; protocol: 'auto' | 'http'; engine: Engine }): string {
  const filters = BUILTIN_CHAIN.map((f) => `      - ref: ${path.join(REPO, 'filters', f.name)}
        config: ${JSON.stringify(f.config)}`).join('\n');
  return `${proxyYaml(o)}
workloads:
  - { name: up-1, namespace: bench, serviceAccount: client, address: 127.0.0.1, labels: { app: up, version: v1 } }
services:
  - name: up
    namespace: bench
    vip: 10.96.0.1
    ports: [{ port: 80, targetPort: ${o.upstream}, protocol: ${o.protocol} }]
    selector: { app: up }
    subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { app: up } }]
bindings:
  - name: builtins
    target: { service: up.bench }
    direction: outbound
    filters:
${filters}
`;
}

/**
 * One Ambit configuration under wrk; `whileUp` runs after the load while the proxy is still
 * up (its listener's port), e.g. a fixed-rate latency run.
 */
async function ambit(
  dir: string, name: string, upstream: number, protocol: 'auto' | 'http', filters: number | 'builtins', seconds: number, engine: Engine = 'v8',
  whileUp?: (port: number) => Promise<void>,
): Promise<Result> {
  const listen = await freePort();
  const admin = await freePort();
  const inbound = await freePort();
  const config = path.join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
  await writeFile(config, meshConfig({ listen, inbound, admin, upstream, protocol, filters, engine }));
  const proc = pinned(0, process.execPath, [CLI, 'run', '--config', config, '--workers', '1', '--access-log', 'off', '--log-level', 'error']);
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  try {
    await waitHttp(admin, '/ready');
    await waitHttp(listen);
    const r: Result = { ...wrk(name, listen, seconds), rssMiB: await residentMiB(proc.pid) };
    await whileUp?.(listen);
    return r;
  } catch (e) {
    throw new Error(`${name}: ${e instanceof Error ? e.message : String(e)}\n${stderr}`);
  } finally {
    await stop(proc);
  }
}

async function nginxProxy(dir: string, upstream: number, seconds: number): Promise<Result> {
  const port = await freePort();
  const conf = path.join(dir, 'proxy.conf');
  await writeFile(conf, `worker_processes 1; daemon off; pid ${dir}/proxy.pid; error_log ${dir}/proxy-error.log;
events { worker_connections 4096; }
http { access_log off;
  upstream up { server 127.0.0.1:${upstream}; keepalive 64; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`);
  const proc = pinned(0, 'nginx', ['-p', dir, '-c', conf, '-e', `${dir}/proxy-error.log`]);
  try {
    await waitHttp(port);
    return wrk('nginx proxy_pass (1 worker)', port, seconds);
  } finally {
    await stop(proc);
  }
}

/** h2load (nghttp2-client): HTTP/2 prior knowledge, 10 connections × 10 streams, bounded by duration. */
function h2load(name: string, port: number, seconds: number): Result {
  const args = ['-c10', '-m10', '-t1', '-D', String(seconds), `http://127.0.0.1:${port}/`];
  const canPin = os.availableParallelism() > 1 && has('taskset');
  const out = execFileSync(canPin ? 'taskset' : 'h2load', canPin ? ['-c', '1', 'h2load', ...args] : args, { encoding: 'utf8', timeout: (seconds + 30) * 1000 });
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? Number.NaN);
  const mean = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out);
  const failed = Number(/(\d+) failed/.exec(out)?.[1] ?? 0) + Number(/(\d+) errored/.exec(out)?.[1] ?? 0);
  const non2xx = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const bad = non2xx ? Number(non2xx[3]) + Number(non2xx[4]) : 0;
  // h2load prints min, max, mean per request; the max stands in for the tail here.
  return { name, rps, p50ms: mean ? unitMs(mean[3]!) : Number.NaN, p99ms: mean ? unitMs(mean[2]!) : Number.NaN, errors: failed + bad };
}

async function nginxH2Proxy(dir: string, upstream: number, seconds: number): Promise<Result> {
  const port = await freePort();
  const conf = path.join(dir, 'proxy-h2.conf');
  await writeFile(conf, `worker_processes 1; daemon off; pid ${dir}/proxy-h2.pid; error_log ${dir}/proxy-h2-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:${upstream}; keepalive 64; }
  server { listen 127.0.0.1:${port} http2; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`);
  const proc = pinned(0, 'nginx', ['-p', dir, '-c', conf, '-e', `${dir}/proxy-h2-error.log`]);
  try {
    await new Promise((r) => setTimeout(r, 500));
    return h2load('h2: nginx h2c proxy (1 worker)', port, seconds);
  } finally {
    await stop(proc);
  }
}

async function nativeH2(dir: string, upstream: number, seconds: number): Promise<Result> {
  const listen = await freePort();
  const admin = await freePort();
  const inbound = await freePort();
  const config = path.join(dir, 'native-h2.yaml');
  await writeFile(config, meshConfig({ listen, inbound, admin, upstream, protocol: 'http', filters: 0, engine: 'native' }));
  const proc = pinned(0, process.execPath, [CLI, 'run', '--config', config, '--workers', '1', '--access-log', 'off', '--log-level', 'error']);
  try {
    await waitHttp(admin, '/ready');
    await waitHttp(listen);
    return h2load('h2: native h2c → HTTP/1.1 service, no filter', listen, seconds);
  } finally {
    await stop(proc);
  }
}

function table(results: Result[], direct: Result, nginx: Result | undefined): string {
  const head = ['path', 'req/s', 'p50 ms', 'p99 ms', 'errors', '× direct', nginx ? '× nginx' : ''];
  const rows = results.map((r) => [
    r.name, r.rps.toFixed(0), r.p50ms.toFixed(2), r.p99ms.toFixed(2), String(r.errors),
    (r.rps / direct.rps).toFixed(2), nginx ? (r.rps / nginx.rps).toFixed(2) : '',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** `seconds`: load per path (default 8, or AMBIT_BENCH_PROXY_SECONDS). */
export async function runProxyBench(options: { seconds?: number } = {}): Promise<void> {
  const DURATION_S = options.seconds ?? Number(process.env.AMBIT_BENCH_PROXY_SECONDS ?? 8);
  if (!has('wrk')) {
    process.stdout.write('\nproxy benchmark skipped: wrk is not installed (apt-get install -y wrk; nginx for the comparison: apt-get install -y nginx-light)\n');
    return;
  }
  const log = (line: string): void => { process.stderr.write(`bench: ${line}\n`); };
  await ensureBuilt(path.join(REPO, 'examples/filters/hello'), log);
  await ensureBuiltinFilters(log);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-bench-proxy-'));
  await mkdir(path.join(dir, 'logs'), { recursive: true });
  const up = await startUpstream(dir);
  process.stdout.write(`\nProxy benchmark: wrk -t1 -c${CONNECTIONS} -d${DURATION_S}s, HTTP/1.1 keep-alive; proxy pinned to core 0, wrk and the upstream (${up.kind}) on core 1\n`);
  try {
    const results: Result[] = [];
    const direct = wrk('direct to upstream', up.port, DURATION_S);
    results.push(direct);
    // Latency at a fixed 1,000 req/s: direct, and through the native path with the six built-ins.
    const rates: RateResult[] = [];
    if (has('h2load')) rates.push(await fixedRate('direct to upstream', up.port, DURATION_S, dir));
    results.push(await ambit(dir, 'Ambit L4 splice', up.port, 'auto', 0, DURATION_S));
    results.push(await ambit(dir, 'Ambit L7, no filter', up.port, 'http', 0, DURATION_S));
    results.push(await ambit(dir, 'Ambit L7, 3 filters (V8)', up.port, 'http', 3, DURATION_S));
    results.push(await ambit(dir, 'Ambit L7, 6 built-in filters (V8)', up.port, 'http', 'builtins', DURATION_S));
    const native = loadNative();
    if (native.ok) {
      results.push(await ambit(dir, 'Ambit L7, 3 filters (wasmtime, pooled)', up.port, 'http', 3, DURATION_S, 'wasmtime'));
      results.push(await ambit(dir, 'Ambit L7, 3 filters (wasmtime, per-request)', up.port, 'http', 3, DURATION_S, 'wasmtime-per-request'));
      results.push(await ambit(dir, 'Ambit L7, 6 built-in filters (wasmtime)', up.port, 'http', 'builtins', DURATION_S, 'wasmtime'));
      if (native.native.NativeProxy) {
        // The native data path (proxy.dataPath: native, one data-path thread): the same rows.
        results.push(await ambit(dir, 'native: L4 splice', up.port, 'auto', 0, DURATION_S, 'native'));
        results.push(await ambit(dir, 'native: L7, no filter', up.port, 'http', 0, DURATION_S, 'native'));
        results.push(await ambit(dir, 'native: L7, 3 hello filters', up.port, 'http', 3, DURATION_S, 'native'));
        results.push(await ambit(dir, 'native: L7, 6 built-in filters', up.port, 'http', 'builtins', DURATION_S, 'native', async (port) => {
          if (has('h2load')) rates.push(await fixedRate('native: L7, 6 built-in filters', port, DURATION_S, dir));
        }));
      }
    } else {
      process.stdout.write(`wasmtime rows skipped: ${native.reason}\n`);
    }
    let nginx: Result | undefined;
    if (has('nginx')) {
      nginx = await nginxProxy(dir, up.port, DURATION_S);
      results.push(nginx);
    }
    let md = table(results, direct, nginx);
    if (has('h2load') && has('nginx') && native.ok && native.native.NativeProxy) {
      // HTTP/2 clients to an HTTP/1.1 service: h2load (10 connections × 10 streams) through each h2c proxy.
      const h2 = [await nativeH2(dir, up.port, DURATION_S), await nginxH2Proxy(dir, up.port, DURATION_S)];
      md += `\n\nHTTP/2 (h2load -c10 -m10; latency columns: mean and max per request)\n\n${table(h2, h2[1]!, h2[1])}`;
      results.push(...h2);
    } else {
      process.stdout.write('h2 rows skipped: needs h2load (apt-get install -y nghttp2-client), nginx and the native data path\n');
    }
    if (rates.length === 2) {
      const [d, b] = rates as [RateResult, RateResult];
      md += `\n\nLatency at a fixed ${FIXED_RATE} req/s (h2load --h1, 10 connections × ${FIXED_RATE / 10} req/s, ${DURATION_S} s; per-request times from its log)\n\n`
        + `| path | requests | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|\n`
        + rates.map((r) => `| ${r.name} | ${r.requests} | ${r.p50ms.toFixed(3)} | ${r.p99ms.toFixed(3)} | ${r.errors} |`).join('\n')
        + `\n\np99 added by the proxy with the six built-ins: ${(b.p99ms - d.p99ms).toFixed(3)} ms (p50: ${(b.p50ms - d.p50ms).toFixed(3)} ms)`;
    }
    const rss = results.filter((r) => r.rssMiB !== undefined && r.name.startsWith('native:'));
    if (rss.length > 0) md += `\n\nResident memory of the proxy process after each native run: ${rss.map((r) => `${r.name} ${r.rssMiB!.toFixed(0)} MiB`).join('; ')}`;
    process.stdout.write(`${md}\n`);
    const outDir = path.join(REPO, 'bench/results');
    await mkdir(outDir, { recursive: true });
    const meta = { date: new Date().toISOString(), node: process.version, cpus: os.cpus()[0]?.model, durationS: DURATION_S, connections: CONNECTIONS, upstream: up.kind };
    await writeFile(path.join(outDir, 'proxy-latest.json'), `${JSON.stringify({ meta, results, fixedRate: rates }, null, 2)}\n`);
    await writeFile(path.join(outDir, 'proxy-latest.md'), `# Proxy benchmark\n\n${JSON.stringify(meta)}\n\n${md}\n`);
  } finally {
    await stop(up.proc);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runProxyBench();
}
