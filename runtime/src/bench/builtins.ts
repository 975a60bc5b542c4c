/**
 * The built-in filters (`filters/*`) on the V8 engine, in one run: each filter's own
 * call time per phase (measured inside the filter worker, as the engine reports it in
 * `calls`), and the whole phase of the six-filter chain as the proxy waits for it (one
 * worker crossing) next to a one-filter chain of the cheapest filter; and the shared
 * storage the rate limit keeps its buckets in (`shared-ops.ts`). Bounded: a fixed number of
 * phases. Not a test: nothing is asserted.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadFilterArtifact, type Context, type RequestHead } from '../deps.js';
import { bindingFromArtifact } from '../filters/binding.js';
import type { FilterBinding, FilterChain } from '../filters/engine.js';
import { V8Engine } from '../filters/v8/engine.js';
import { newServiceLoad } from '../proxy/state.js';
import { ensureBuilt } from './ensure-built.js';
import { summarize, type Summary } from './stats.js';
import { renderSharedOps, runSharedOpsBench, type SharedOpsResult } from './shared-ops.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '../../..');

/** Chain order of the issue: authz → ratelimit → fault → traffic-split → headers; retry wraps attempts (last, so first on responses). */
export const BUILTIN_CHAIN: ReadonlyArray<{ name: string; config: unknown }> = [
  { name: 'authz', config: { policies: [{ name: 'reads', action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['bench'] } }], to: [{ operation: { methods: ['GET'], notPaths: ['/admin*'] } }] }] }, { name: 'no-admin', action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] }] } },
  { name: 'ratelimit', config: { maxTokens: 1_000_000_000, tokensPerFill: 1_000_000_000, fillIntervalMs: 1000, key: { by: 'source' } } },
  // Every request with an x-request-id is eligible and draws (a `random` host call); 1 in 10^8 is aborted.
  { name: 'fault', config: { abort: { percentage: 0.000001, httpStatus: 503 }, match: { 'x-request-id': '' } } },
  { name: 'traffic-split', config: { subsets: [{ name: 'v1', weight: 95 }, { name: 'v2', weight: 5 }] } },
  { name: 'headers', config: { request: { set: { 'x-source-identity': '%SOURCE_IDENTITY%' }, remove: ['x-internal'] }, response: { set: { 'x-served-by': '%DESTINATION_SERVICE%' } } } },
  { name: 'retry', config: { attempts: 2, perTryTimeoutMs: 1000, retryOn: ['5xx', 'connect-failure'] } },
];

export interface BuiltinBenchResult {
  phases: number;
  /** Per filter and phase: time inside the worker (µs). */
  perFilter: Array<{ filter: string; phase: string; us: Summary }>;
  /** Whole phase as the caller waits for it (µs): the six-filter chain, and headers alone. */
  chain: Array<{ chain: string; phase: string; us: Summary }>;
  /** Shared storage operations: the node-wide table next to the in-process one. */
  shared: SharedOpsResult;
}

/** Builds any built-in filter whose dist is missing. */
export async function ensureBuiltinFilters(log: (s: string) => void): Promise<void> {
  for (const { name } of BUILTIN_CHAIN) await ensureBuilt(path.join(REPO, 'filters', name), log);
}

/** The six, in chain order, configured as above. */
export function builtinBindings(): Promise<FilterBinding[]> {
  return Promise.all(BUILTIN_CHAIN.map(async (f) => bindingFromArtifact(await loadFilterArtifact(path.join(REPO, 'filters', f.name)), { config: f.config })));
}

const ctx: Context = {
  direction: 'outbound',
  source: { identity: 'spiffe://cluster.local/ns/bench/sa/client', workload: 'client', namespace: 'bench', address: '10.0.0.5', port: 40000 },
  destination: { address: '10.96.0.1', port: 80 },
  service: 'up.bench', route: 'up.bench:80', requestId: 'bench-1', attempt: 1,
};
const request: RequestHead = {
  method: 'GET', scheme: 'http', authority: 'up.bench', path: '/api/items?page=2',
  headers: [['user-agent', 'bench/1'], ['accept', '*/*'], ['x-request-id', 'bench-1'], ['x-internal', 'drop-me']],
};

async function measure(chain: FilterChain, phases: number, perFilter: Map<string, number[]>): Promise<{ req: number[]; res: number[] }> {
  const load = newServiceLoad();
  const req: number[] = [];
  const res: number[] = [];
  for (let i = 0; i < phases; i++) {
    let t0 = performance.now();
    const a = await chain.run({ phase: 'requestHeaders', ctx, request: structuredClone(request), load });
    req.push((performance.now() - t0) * 1000);
    for (const c of a.calls) perFilter.get(`${c.filter}\0requestHeaders`)?.push(c.durationMs * 1000) ?? perFilter.set(`${c.filter}\0requestHeaders`, [c.durationMs * 1000]);
    t0 = performance.now();
    const b = await chain.run({ phase: 'responseHeaders', ctx, request, response: { status: 200, headers: [['content-type', 'text/plain']] }, load });
    res.push((performance.now() - t0) * 1000);
    for (const c of b.calls) perFilter.get(`${c.filter}\0responseHeaders`)?.push(c.durationMs * 1000) ?? perFilter.set(`${c.filter}\0responseHeaders`, [c.durationMs * 1000]);
  }
  return { req, res };
}

export async function runBuiltinFilterBench(options: { phases?: number; log?: (s: string) => void } = {}): Promise<BuiltinBenchResult> {
  const log = options.log ?? (() => {});
  const phases = options.phases ?? 3000;
  await ensureBuiltinFilters(log);
  const engine = new V8Engine({ workers: 1, onLog: () => {} });
  try {
    const bindings = await builtinBindings();
    const full = await engine.createChain(bindings);
    const single = await engine.createChain([bindings.find((b) => b.name === 'headers')!]);
    const perFilter = new Map<string, number[]>();
    // Warm up (JIT, instance caches), then measure; alternate the chains so drift hits both.
    await measure(full, 300, new Map());
    await measure(single, 300, new Map());
    const fullTimes = { req: [] as number[], res: [] as number[] };
    const singleTimes = { req: [] as number[], res: [] as number[] };
    for (let round = 0; round < 5; round++) {
      const f = await measure(full, Math.ceil(phases / 5), perFilter);
      const s = await measure(single, Math.ceil(phases / 5), new Map());
      fullTimes.req.push(...f.req); fullTimes.res.push(...f.res);
      singleTimes.req.push(...s.req); singleTimes.res.push(...s.res);
    }
    await full.close();
    await single.close();
    return {
      phases,
      shared: runSharedOpsBench(),
      perFilter: [...perFilter].map(([k, v]) => { const [filter, phase] = k.split('\0') as [string, string]; return { filter, phase, us: summarize(v) }; }),
      chain: [
        { chain: 'six built-in filters', phase: 'requestHeaders', us: summarize(fullTimes.req) },
        { chain: 'headers alone', phase: 'requestHeaders', us: summarize(singleTimes.req) },
        { chain: 'six built-in filters', phase: 'responseHeaders', us: summarize(fullTimes.res) },
        { chain: 'headers alone', phase: 'responseHeaders', us: summarize(singleTimes.res) },
      ],
    };
  } finally {
    await engine.close();
  }
}

export function renderBuiltinBench(r: BuiltinBenchResult): string {
  const f = (n: number) => n.toFixed(1);
  const lines = [
    `Built-in filters on V8 (QuickJS), ${r.phases} phases each, one filter thread`,
    '',
    '| filter | phase | p50 µs | p99 µs |',
    '|---|---|---|---|',
    ...r.perFilter.map((p) => `| ${p.filter} | ${p.phase} | ${f(p.us.p50)} | ${f(p.us.p99)} |`),
    '',
    '| chain (whole phase, as the proxy waits) | phase | p50 µs | p99 µs |',
    '|---|---|---|---|',
    ...r.chain.map((c) => `| ${c.chain} | ${c.phase} | ${f(c.us.p50)} | ${f(c.us.p99)} |`),
    '',
    renderSharedOps(r.shared),
  ];
  return lines.join('\n');
}

export async function writeBuiltinBench(r: BuiltinBenchResult): Promise<void> {
  const outDir = path.join(REPO, 'bench/results');
  await mkdir(outDir, { recursive: true });
  const meta = { date: new Date().toISOString(), node: process.version, cpus: os.cpus()[0]?.model };
  await writeFile(path.join(outDir, 'builtins-latest.json'), `${JSON.stringify({ meta, ...r }, null, 2)}\n`);
  await writeFile(path.join(outDir, 'builtins-latest.md'), `# Built-in filters benchmark\n\n${JSON.stringify(meta)}\n\n${renderBuiltinBench(r)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const r = await runBuiltinFilterBench({ phases: Number(process.env.AMBIT_BENCH_PHASES ?? 3000), log: (s) => process.stderr.write(`bench: ${s}\n`) });
  process.stdout.write(`${renderBuiltinBench(r)}\n`);
  await writeBuiltinBench(r);
}
