/**
 * `npm run bench:controller`: the controller's config distribution at scale.
 *
 * - 1,000 simulated node connections (the runtime's own ConfigStream clients, in this
 *   process) against the controller (in a child process: the mesh model filled with
 *   10,000 services and 50,000 pods of synthetic objects, and its real gRPC distribution);
 * - the time from a change to every affected node's acknowledgement, p50 and p99: a pod
 *   change (one node concerned) and a new trust bundle (every node concerned);
 * - the controller's memory, and one node's memory with 10,000 services in the mesh of
 *   which 10 concern it, against a mesh of 1,000 services (flat = it does not grow).
 *
 * Writes bench/results/controller-latest.{json,md}.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlplane } from '@ambit/runtime';
import { nodeName, type Shape } from './synthetic.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '../../..');
const NODES = Number(process.env.AMBIT_BENCH_NODES ?? 1000);
const BIG: Shape = { namespaces: NODES, servicesPerNamespace: 10, podsPerNamespace: 50 };
const POD_CHANGES = 100;
const MESH_CHANGES = 20;
const WAIT_MS = 30_000;

interface Child { proc: ChildProcess; request<T>(m: object, reply: string): Promise<T> }

function child(file: string, args: string[] = []): Child {
  const proc = fork(path.join(here, file), args, { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map<string, ((v: unknown) => void)[]>();
  proc.on('message', (m: { type: string }) => {
    const q = waiting.get(m.type);
    q?.shift()?.(m);
  });
  return {
    proc,
    request<T>(m: object, reply: string) {
      return new Promise<T>((resolve, reject) => {
        let q = waiting.get(reply);
        if (!q) waiting.set(reply, (q = []));
        const t = setTimeout(() => reject(new Error(`no ${reply} from ${file} within 10 min`)), 600_000);
        q.push((v) => { clearTimeout(t); resolve(v as T); });
        if (Object.keys(m).length > 0) proc.send(m);
      });
    },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
const summary = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50: +percentile(s, 50).toFixed(1), p99: +percentile(s, 99).toFixed(1), max: +s[s.length - 1]!.toFixed(1) };
};
const mb = (b: number) => +(b / 1048576).toFixed(1);

async function startControllerChild(shape: Shape, nodes: number): Promise<{ c: Child; port: number; buildMs: number; resources: number }> {
  const c = child('controller-child.js');
  await c.request({}, 'hello');
  const r = await c.request<{ port: number; buildMs: number; resources: number }>({ type: 'start', shape, nodes }, 'ready');
  return { c, ...r };
}

async function nodeMemory(port: number, node: string): Promise<{ before: number; after: number; resources: number; services: number; workloads: number }> {
  const c = child('node-child.js', [`127.0.0.1:${port}`, node]);
  return c.request({}, 'node-memory');
}

async function main(): Promise<void> {
  const say = (l: string) => process.stdout.write(`${l}\n`);
  say(`controller scale bench: ${NODES} nodes, ${BIG.namespaces * BIG.servicesPerNamespace} services, ${BIG.namespaces * BIG.podsPerNamespace} pods`);
  const big = await startControllerChild(BIG, NODES);
  say(`model built in ${big.buildMs.toFixed(0)} ms: ${big.resources} resources`);

  // 1,000 node connections.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-bench-nodes-'));
  const streams: controlplane.ConfigStream[] = [];
  const waiters = new Map<number, { key: string; version: string; resolve: () => void }[]>();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: NODES }, async (_, k) => {
    const tokenFile = path.join(dir, `${k}.token`);
    await writeFile(tokenFile, nodeName(k));
    const s = new controlplane.ConfigStream({ connection: { address: `127.0.0.1:${big.port}`, tokenFile }, node: nodeName(k) });
    streams[k] = s;
    s.on('update', (p) => {
      s.ack(p);
      const list = waiters.get(k);
      if (!list) return;
      for (const w of [...list]) {
        if (s.resources.version(w.key) === w.version) {
          list.splice(list.indexOf(w), 1);
          w.resolve();
        }
      }
    });
    await s.start();
    const first = await s.first();
    s.ack(first);
  }));
  const syncMs = performance.now() - t0;
  say(`${NODES} nodes connected and synced in ${syncMs.toFixed(0)} ms`);

  const seen = (k: number, key: string, version: string) => new Promise<void>((resolve, reject) => {
    if (streams[k]!.resources.version(key) === version) return resolve();
    let list = waiters.get(k);
    if (!list) waiters.set(k, (list = []));
    const t = setTimeout(() => reject(new Error(`node ${k} did not get ${key}@${version} within ${WAIT_MS} ms`)), WAIT_MS);
    list.push({ key, version, resolve: () => { clearTimeout(t); resolve(); } });
  });

  const podLat: number[] = [];
  for (let i = 0; i < POD_CHANGES; i++) {
    const k = Math.floor(Math.random() * NODES);
    const start = performance.now();
    const ch = await big.c.request<{ key: string; version: string }>({ type: 'change', id: i, kind: 'pod', namespace: k, pod: i % BIG.podsPerNamespace }, 'changed');
    await seen(k, ch.key, ch.version);
    podLat.push(performance.now() - start);
  }
  const nodeLat: number[] = [];
  for (let i = 0; i < MESH_CHANGES; i++) {
    const start = performance.now();
    const ch = await big.c.request<{ key: string; version: string }>({ type: 'change', id: POD_CHANGES + i, kind: 'roots' }, 'changed');
    await Promise.all(streams.map((_, k) => seen(k, ch.key, ch.version)));
    nodeLat.push(performance.now() - start);
  }
  const pod = summary(podLat);
  const all = summary(nodeLat);
  say(`pod change → its node's ACK: p50 ${pod.p50} ms, p99 ${pod.p99} ms`);
  say(`trust bundle change → all ${NODES} nodes' ACKs: p50 ${all.p50} ms, p99 ${all.p99} ms`);
  const ctrlMem = await big.c.request<{ rss: number; heapUsed: number }>({ type: 'memory' }, 'memory');
  say(`controller: rss ${mb(ctrlMem.rss)} MiB, heap ${mb(ctrlMem.heapUsed)} MiB`);
  for (const s of streams) s.close();
  const nodeBig = await nodeMemory(big.port, nodeName(0));
  big.c.proc.kill();

  const smallShape: Shape = { namespaces: Math.max(1, Math.round(NODES / 10)), servicesPerNamespace: 10, podsPerNamespace: 50 };
  const small = await startControllerChild(smallShape, smallShape.namespaces);
  const nodeSmall = await nodeMemory(small.port, nodeName(0));
  small.c.proc.kill();
  await rm(dir, { recursive: true, force: true });
  say(`a node's config memory: ${mb(nodeBig.after - nodeBig.before)} MiB with ${BIG.namespaces * 10} services in the mesh (${nodeBig.services} concern it), ${mb(nodeSmall.after - nodeSmall.before)} MiB with ${smallShape.namespaces * 10} (${nodeSmall.services} concern it)`);

  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, load1: os.loadavg()[0], node: process.version },
    shape: { nodes: NODES, services: BIG.namespaces * BIG.servicesPerNamespace, pods: BIG.namespaces * BIG.podsPerNamespace, namespaces: BIG.namespaces },
    modelBuildMs: +big.buildMs.toFixed(0), resources: big.resources, syncAllNodesMs: +syncMs.toFixed(0),
    podChangeToAckMs: pod, meshChangeToAllAcksMs: all,
    controllerMemory: { rssMiB: mb(ctrlMem.rss), heapMiB: mb(ctrlMem.heapUsed) },
    nodeMemory: {
      big: { servicesInMesh: BIG.namespaces * 10, servicesConcerningIt: nodeBig.services, workloads: nodeBig.workloads, heapDeltaMiB: mb(nodeBig.after - nodeBig.before) },
      small: { servicesInMesh: smallShape.namespaces * 10, servicesConcerningIt: nodeSmall.services, workloads: nodeSmall.workloads, heapDeltaMiB: mb(nodeSmall.after - nodeSmall.before) },
    },
    goals: { p99UnderMs: 2000, p99Met: Math.max(pod.p99, all.p99) <= 2000 },
  };
  const out = path.join(REPO, 'bench/results');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'controller-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(path.join(out, 'controller-latest.md'), `# Controller scale benchmark

${result.date}, ${result.machine.cpus} cores (${result.machine.model}), load ${(result.machine.load1 ?? 0).toFixed(2)} at the end, Node ${result.machine.node}.

${NODES} node connections (ConfigStream clients in one process) to the controller (a child process: the mesh model with
${result.shape.services} services, ${result.shape.pods} pods in ${result.shape.namespaces} namespaces of synthetic objects, its real gRPC distribution over loopback).
Each namespace's pods run on one node and the namespace reaches only itself (\`ambit.dev/reaches\`), so each node is concerned by 10 services.

| what | result |
|---|---|
| model built from the objects | ${result.modelBuildMs} ms (${result.resources} resources) |
| ${NODES} nodes connected and synced | ${result.syncAllNodesMs} ms |
| pod change → its node's ACK | p50 ${pod.p50} ms, p99 ${pod.p99} ms, max ${pod.max} ms (${pod.n} changes) |
| trust bundle change → all ${NODES} nodes' ACKs | p50 ${all.p50} ms, p99 ${all.p99} ms, max ${all.max} ms (${all.n} changes) |
| controller memory | RSS ${result.controllerMemory.rssMiB} MiB, heap ${result.controllerMemory.heapMiB} MiB |
| a node's config memory, ${result.nodeMemory.big.servicesInMesh} services in the mesh | ${result.nodeMemory.big.heapDeltaMiB} MiB (${result.nodeMemory.big.servicesConcerningIt} services, ${result.nodeMemory.big.workloads} workloads received) |
| a node's config memory, ${result.nodeMemory.small.servicesInMesh} services in the mesh | ${result.nodeMemory.small.heapDeltaMiB} MiB (${result.nodeMemory.small.servicesConcerningIt} services, ${result.nodeMemory.small.workloads} workloads received) |

Goal p99 ≤ 2 s: ${result.goals.p99Met ? 'met' : 'NOT met'}. Node authentication is the one part not exercised (the nodes present their name as the token; TokenReview is covered by the tests).
`);
  say(`written to bench/results/controller-latest.{json,md}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
