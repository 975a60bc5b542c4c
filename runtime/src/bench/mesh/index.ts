/**
 * mTLS between node proxies, side by side in one run (`npm run bench`, after the proxy
 * benchmark; alone: `npm run bench:mesh`):
 *
 * - throughput and p50/p99 (wrk, HTTP/1.1 keep-alive, 50 connections) through two node
 *   proxies, node-1 → node-2 → workload, over HBONE (TLS 1.3, HTTP/2 CONNECT) and over
 *   the same two hops in plaintext, next to the workload reached directly;
 * - the latency added at a fixed 1000 req/s (`rate.ts`: the native open-loop generator of
 *   `@ambit/native`, 16 keep-alive connections), HBONE and plaintext against direct — the
 *   number Istio publishes for two ztunnels (about 0.17 ms p90, 0.20 ms p99, Istio 1.22);
 * - new mTLS handshakes per second against one node's HBONE listener, and per CPU-second
 *   of that node proxy's process.
 *
 * All on loopback: the client workload is 127.0.0.1 (where wrk connects from), the
 * server workload 127.0.2.1 (an nginx `return 200`, or a Node server without nginx).
 * Both proxies (one process each, `--workers 1`) are pinned to core 0; the load and the
 * upstream share core 1. Traffic is L4 on both nodes (port protocol tcp), as ztunnel's.
 *
 * Every node runs the native data path (one data-path thread: rustls and h2 for HBONE).
 * node-2's HBONE listener is bound to the server workload's address, which node-1 dials, as
 * ztunnel does.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority } from '../../identity/ca.js';
import { sampleOtherCores } from '../machine-load.js';
import { BUSY_CORES } from '../meta.js';
import { BULK_BYTES, freePort, has, pinned, startUpstream, stop, waitHttp, wrk, type Result } from '../proxy/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '../../../..');
const CLI = path.join(REPO, 'runtime/dist/cli.js');
const TD = 'bench.local';
const SERVER = '127.0.2.1';
const RATE = 1000;

interface Node {
  proc: ChildProcess;
  outbound: number;
  hbone: number;
  /** Where its HBONE listener is bound. */
  hboneHost: string;
  stderr: () => string;
}

interface RateResult { name: string; generator: string; sent: number; ok: number; errors: number; p50ms: number; p90ms: number; p99ms: number; lateP99ms?: number }

function yaml(o: {
  node: string; outbound: number; inbound: number; admin: number; hbone: number; upstream: number;
  caDir?: string; node2?: { hbone: number }; endpoints?: string; hboneAddress?: string;
}): string {
  // The server workload is on node-2; node-1 reaches it by HBONE (identity set, node-2
  // listed) or, in the plaintext path, through node-2's outbound listener (endpoints).
  return `node: ${o.node}
trustDomain: ${TD}
${o.caDir ? `identity: { ca: { dir: ${JSON.stringify(o.caDir)} } }` : ''}
proxy:
  outbound: { address: 127.0.0.1, port: ${o.outbound}, target: "${o.endpoints ? 'hop' : 'server'}.bench:80" }
  inbound: { address: 127.0.0.1, port: ${o.inbound} }
  admin: { address: 127.0.0.1, port: ${o.admin} }
  hbone: { address: ${o.hboneAddress ?? '127.0.0.1'}, port: ${o.hbone} }
  engine: wasmtime
  dataPath: native
  native: { threads: 1 }
  wasmtime: { threads: 1 }
${o.node2 ? `nodes: [{ name: node-2, address: 127.0.0.1, hbonePort: ${o.node2.hbone} }]` : ''}
workloads:
  - { name: client, namespace: bench, serviceAccount: client, address: 127.0.0.1, node: node-1 }
  - { name: server, namespace: bench, serviceAccount: server, address: ${SERVER}, node: node-2, labels: { app: server } }
services:
  - { name: server, namespace: bench, selector: { app: server }, ports: [{ port: 80, targetPort: ${o.upstream}, protocol: tcp }] }
${o.endpoints ? `  - { name: hop, namespace: bench, endpoints: [${o.endpoints}], ports: [{ port: 80, protocol: tcp }] }` : ''}
`;
}

async function startNode(dir: string, name: string, config: string, ports: { outbound: number; admin: number }): Promise<Node> {
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, config);
  const proc = pinned(0, process.execPath, [CLI, 'run', '--config', file, '--workers', '1', '--access-log', 'off', '--log-level', 'error']);
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-10_000); });
  try {
    await waitHttp(ports.admin, '/ready');
  } catch (e) {
    await stop(proc);
    throw new Error(`${name}: ${(e as Error).message}\n${stderr}`);
  }
  return { proc, outbound: ports.outbound, hbone: 0, hboneHost: '127.0.0.1', stderr: () => stderr };
}

interface Path { name: string; nodes: Node[]; port: number; host: string }

/** node-1 → HBONE to `<server ip>:<node-2's hbone port>` → node-2 (inbound) → server. */
async function hbonePath(dir: string, upstream: number, caDir: string): Promise<Path> {
  const p2 = { outbound: await freePort(), inbound: await freePort(), admin: await freePort(), hbone: await freePort() };
  const n2 = await startNode(dir, 'hbone-node-2', yaml({ node: 'node-2', ...p2, upstream, caDir, hboneAddress: SERVER }), p2);
  const p1 = { outbound: await freePort(), inbound: await freePort(), admin: await freePort(), hbone: await freePort() };
  const n1 = await startNode(dir, 'hbone-node-1', yaml({ node: 'node-1', ...p1, upstream, caDir, node2: { hbone: p2.hbone } }), p1).catch(async (e: unknown) => {
    await stop(n2.proc);
    throw e;
  });
  n2.hbone = p2.hbone;
  n2.hboneHost = SERVER;
  await waitHttp(p1.outbound);
  return { name: 'two node proxies, HBONE (mTLS)', nodes: [n1, n2], port: p1.outbound, host: '127.0.0.1' };
}

/** node-1 → node-2 (outbound listener, plaintext) → server: the same two hops without TLS. */
async function plaintextPath(dir: string, upstream: number): Promise<Path> {
  const p2 = { outbound: await freePort(), inbound: await freePort(), admin: await freePort(), hbone: await freePort() };
  const n2 = await startNode(dir, 'plain-node-2', yaml({ node: 'node-2', ...p2, upstream }).replace('target: "server.bench:80"', `target: "${SERVER}:${upstream}"`), p2);
  const p1 = { outbound: await freePort(), inbound: await freePort(), admin: await freePort(), hbone: await freePort() };
  const n1 = await startNode(dir, 'plain-node-1', yaml({ node: 'node-1', ...p1, upstream, endpoints: `{ address: 127.0.0.1, port: ${p2.outbound} }` }), p1).catch(async (e: unknown) => {
    await stop(n2.proc);
    throw e;
  });
  await waitHttp(p1.outbound);
  return { name: 'two node proxies, plaintext', nodes: [n1, n2], port: p1.outbound, host: '127.0.0.1' };
}

function atRate(name: string, host: string, port: number, seconds: number): RateResult {
  // The generator on core 1, with the upstream.
  const script = path.join(here, 'rate.js');
  const canPin = os.availableParallelism() > 1 && has('taskset');
  const args = [script, `http://${host}:${port}/`, String(RATE), String(seconds)];
  const out = execFileSync(canPin ? 'taskset' : process.execPath, canPin ? ['-c', '1', process.execPath, ...args] : args, { encoding: 'utf8', timeout: (seconds + 30) * 1000 });
  return { name, ...(JSON.parse(out.trim().split('\n').pop()!) as Omit<RateResult, 'name'>) };
}

/** One bulk download (the upstream's `/bulk`, curl on core 1): bytes per second, or undefined without curl or nginx. */
function bulk(name: string, host: string, port: number): { name: string; bytes: number; gbPerSecond: number } | undefined {
  if (!has('curl') || !has('nginx')) return undefined;
  const canPin = os.availableParallelism() > 1 && has('taskset');
  const args = ['-s', '-o', '/dev/null', '--max-time', '60', '-w', '%{size_download} %{speed_download}', `http://${host}:${port}/bulk`];
  const out = execFileSync(canPin ? 'taskset' : 'curl', canPin ? ['-c', '1', 'curl', ...args] : args, { encoding: 'utf8', timeout: 90_000 });
  const [size, speed] = out.trim().split(' ').map(Number);
  return { name, bytes: size!, gbPerSecond: speed! / 1e9 };
}

/** utime + stime of a process, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

async function handshakeRate(node: Node, caDir: string, seconds: number): Promise<{ perSecond: number; perCpuSecond: number; errors: number; cpuSeconds: number }> {
  const script = path.join(here, 'handshakes.js');
  const canPin = os.availableParallelism() > 1 && has('taskset');
  const args = [script, node.hboneHost, String(node.hbone), caDir, TD, String(seconds), '16'];
  const cpu0 = await cpuSeconds(node.proc.pid!);
  const out = execFileSync(canPin ? 'taskset' : process.execPath, canPin ? ['-c', '1', process.execPath, ...args] : args, { encoding: 'utf8', timeout: (seconds + 60) * 1000 });
  const cpu = (await cpuSeconds(node.proc.pid!)) - cpu0;
  const r = JSON.parse(out.trim().split('\n').pop()!) as { handshakes: number; errors: number };
  return { perSecond: r.handshakes / seconds, perCpuSecond: cpu > 0 ? r.handshakes / cpu : Number.NaN, errors: r.errors, cpuSeconds: cpu };
}

function mdTable(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** `seconds`: load per path (default 8, or AMBIT_BENCH_MESH_SECONDS). */
export async function runMeshBench(options: { seconds?: number } = {}): Promise<void> {
  const seconds = options.seconds ?? Number(process.env.AMBIT_BENCH_MESH_SECONDS ?? 8);
  // Other load skews everything here (two proxies share one core): the report says how much there was.
  const otherCoresBefore = await sampleOtherCores(1000);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-bench-mesh-'));
  const caDir = path.join(dir, 'ca');
  await CertificateAuthority.loadOrCreate(caDir, { trustDomain: TD });
  const up = await startUpstream(dir, SERVER);
  const withWrk = has('wrk');
  process.stdout.write(`\nMesh (mTLS) benchmark: two node proxies pinned to core 0; load and upstream (${up.kind} on ${SERVER}) on core 1; ${seconds} s per run\n`);
  if (otherCoresBefore > BUSY_CORES) process.stdout.write(`  warning: other processes were using ${otherCoresBefore.toFixed(1)} of ${os.availableParallelism()} cores before the run; they skew these numbers\n`);
  if (!withWrk) process.stdout.write('  wrk is not installed (apt-get install -y wrk): the throughput table is skipped; the fixed-rate and handshake runs do not need it\n');
  const paths: Path[] = [];
  try {
    paths.push(await plaintextPath(dir, up.port));
    paths.push(await hbonePath(dir, up.port, caDir));
    const throughput: Result[] = [];
    const rate: RateResult[] = [];
    if (withWrk) throughput.push(wrk('direct to the workload', up.port, seconds, SERVER));
    rate.push(atRate('direct to the workload', SERVER, up.port, seconds));
    for (const p of paths) {
      if (withWrk) throughput.push(wrk(p.name, p.port, seconds, p.host));
      rate.push(atRate(p.name, p.host, p.port, seconds));
    }
    // The first read of the file fills the page cache: not a measurement.
    bulk('page cache warm-up', SERVER, up.port);
    const bulks = [bulk('direct to the workload', SERVER, up.port), ...paths.map((p) => bulk(p.name, p.host, p.port))].filter((b) => b !== undefined);
    const hs = await handshakeRate(paths[1]!.nodes[1]!, caDir, seconds);

    const direct = rate[0]!;
    const sections: string[] = [];
    if (withWrk) {
      const d = throughput[0]!;
      sections.push(`## Throughput (wrk -t1 -c50 -d${seconds}s, keep-alive)\n\n${mdTable(
        ['path', 'req/s', 'p50 ms', 'p99 ms', 'errors', '× direct'],
        throughput.map((r) => [r.name, r.rps.toFixed(0), r.p50ms.toFixed(2), r.p99ms.toFixed(2), String(r.errors), (r.rps / d.rps).toFixed(2)]),
      )}`);
    }
    const generator = direct.generator === 'native'
      ? 'the native open-loop generator: 16 keep-alive connections, one thread each; latency from send to last byte; "late p99" is how late sends were against their due time'
      : 'the undici generator (@ambit/native is not built): latency from each request\'s due time, with its event loop\'s delays';
    sections.push(`## Latency at a fixed ${RATE} req/s (${seconds} s; ${generator})\n\n${mdTable(
      ['path', 'sent', 'errors', 'p50 ms', 'p90 ms', 'p99 ms', 'added p90 ms', 'added p99 ms', 'late p99 ms'],
      rate.map((r) => [r.name, String(r.sent), String(r.errors), r.p50ms.toFixed(3), r.p90ms.toFixed(3), r.p99ms.toFixed(3),
        r === direct ? '' : (r.p90ms - direct.p90ms).toFixed(3), r === direct ? '' : (r.p99ms - direct.p99ms).toFixed(3), r.lateP99ms?.toFixed(3) ?? '']),
    )}\n\nAnchor: two ztunnels add about 0.17 ms p90 / 0.20 ms p99 at 1000 req/s (Istio 1.22, published).`);
    if (bulks.length > 0) {
      sections.push(`## One bulk stream (${(BULK_BYTES / 2 ** 30).toFixed(0)} GiB from nginx with sendfile, curl on core 1)\n\n${mdTable(
        ['path', 'bytes', 'GB/s', '× direct'],
        bulks.map((b) => [b.name, String(b.bytes), b.gbPerSecond.toFixed(2), (b.gbPerSecond / bulks[0]!.gbPerSecond).toFixed(2)]),
      )}`);
    }
    sections.push(`## New mTLS handshakes (TLS 1.3, ECDSA P-256, client certificate and SPIFFE ID verified; 16 concurrent clients on core 1)\n\n${mdTable(
      ['HBONE listener', 'handshakes/s', 'per CPU-second of the node proxy', 'node proxy CPU s', 'errors'],
      [{ name: 'node-2 (rustls)', r: hs }]
        .map(({ name, r }) => [name, r.perSecond.toFixed(0), r.perCpuSecond.toFixed(0), r.cpuSeconds.toFixed(2), String(r.errors)]),
    )}`);
    const md = sections.join('\n\n');
    process.stdout.write(`${md}\n`);
    const outDir = path.join(REPO, 'bench/results');
    await mkdir(outDir, { recursive: true });
    const meta = { date: new Date().toISOString(), node: process.version, cpus: os.cpus()[0]?.model, cores: os.availableParallelism(), seconds, rate: RATE, upstream: up.kind, otherCoresBefore: Number(otherCoresBefore.toFixed(2)), loadAverageEnd: os.loadavg().map((l) => Number(l.toFixed(2))) };
    await writeFile(path.join(outDir, 'mesh-latest.json'), `${JSON.stringify({ meta, throughput, rate, bulk: bulks, handshakes: hs }, null, 2)}\n`);
    await writeFile(path.join(outDir, 'mesh-latest.md'), `# Mesh (mTLS) benchmark\n\n${JSON.stringify(meta)}\n\n${md}\n`);
  } finally {
    for (const p of paths) for (const n of p.nodes) await stop(n.proc);
    await stop(up.proc);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runMeshBench();
}
