/**
 * Section 3: the two engines side by side on the same components — V8 (jco + worker
 * threads) and wasmtime (`@ambit/native`) — per chain run (1 and 5 filters, one at a
 * time and many in flight), wasmtime's pooled vs per-request instances, and what a
 * fresh wasmtime instance costs (time and memory) next to a V8 one.
 */
import path from 'node:path';
import { loadNative, WasmtimeEngine, type FilterChain } from './deps.js';
import type { InstanceRow } from './instances.js';
import type { BenchOptions } from './options.js';
import { summarize, type Summary } from './stats.js';
import { fmt, fmtMiB, fmtRate, fmtRatio, type Table } from './table.js';
import { bindings, measureEngine, openEngine } from './through-engine.js';
import { engineCacheDir, VARIANT_LABELS, type Variant, type VariantId } from './variants.js';

export type EngineKind = 'v8' | 'wasmtime' | 'wasmtime per-request';

export interface EngineRow {
  engine: EngineKind;
  variant: VariantId;
  chain: number;
  concurrency: number;
  us: Summary;
  runsPerSec: number;
  filterCallsPerSec: number;
  cpuUsPerRun: number;
}

export interface InstantiationRow {
  variant: VariantId;
  /** wasmtime, per-request path: a fresh instance from the pooling allocator (µs, wall and thread CPU). */
  instantiateUs: Summary;
  instantiateCpuUs: Summary;
  /** The filter's `configure` on that instance (guest code: parsing its config). */
  configureUs: Summary;
  rssPerInstanceBytes: number;
  /** V8, from section 2: instantiate from the compiled modules (µs) and RSS per instance. */
  v8InstantiateUs: number | undefined;
  v8RssPerInstanceBytes: number | undefined;
}

export interface EngineResults {
  skipped?: string;
  rows: EngineRow[];
  instantiation: InstantiationRow[];
}

async function measure(
  engine: EngineKind, v: Variant, chain: FilterChain, length: number, concurrency: number, opts: BenchOptions,
): Promise<EngineRow> {
  const r = await measureEngine(chain, length, opts.engine, concurrency, `${v.label} on ${engine}, ${length} filter(s), ${concurrency} in flight`);
  const us = summarize(r.samples);
  const runsPerSec = (us.count / r.elapsedMs) * 1000;
  return { engine, variant: v.id, chain: length, concurrency, us, runsPerSec, filterCallsPerSec: runsPerSec * length, cpuUsPerRun: (r.cpuMs * 1000) / Math.max(1, us.count) };
}

export async function measureEngines(
  opts: BenchOptions, variants: Variant[], instances: InstanceRow[], log: (line: string) => void,
): Promise<EngineResults> {
  const native = loadNative();
  if (!native.ok) return { skipped: `wasmtime engine not available: ${native.reason}`, rows: [], instantiation: [] };
  const wasm = variants.filter((v) => v.id !== 'plain');
  const rows: EngineRow[] = [];
  const instantiation: InstantiationRow[] = [];
  const lengths = [1, opts.longChain];
  const say = (r: EngineRow): void => log(`engines ${r.engine.padEnd(20)} ${VARIANT_LABELS[r.variant].padEnd(15)} chain ${r.chain} c${String(r.concurrency).padEnd(2)}: p50 ${r.us.p50.toFixed(1)} µs, ${fmtRate(r.runsPerSec)} runs/s`);

  for (const v of wasm) {
    const v8 = openEngine(opts.workers, engineCacheDir(opts));
    const wt = new WasmtimeEngine({ threads: opts.workers, cacheDir: path.join(opts.workDir, 'wasmtime-cache'), onLog: () => {}, onCounter: () => {} });
    try {
      for (const length of lengths) {
        for (const [kind, engine] of [['v8', v8], ['wasmtime', wt]] as const) {
          const chain = await engine.createChain(bindings(v, length));
          for (const concurrency of [1, opts.concurrency]) {
            const row = await measure(kind, v, chain, length, concurrency, opts);
            rows.push(row);
            say(row);
          }
          await chain.close();
        }
        const perRequest = await wt.createChain(bindings(v, length).map((b) => ({ ...b, instances: 'per-request' as const })));
        for (const concurrency of [1, opts.concurrency]) {
          const row = await measure('wasmtime per-request', v, perRequest, length, concurrency, opts);
          rows.push(row);
          say(row);
        }
        await perRequest.close();
      }
      const probe = await wt.probeInstances(bindings(v, 1)[0]!, opts.quick ? 200 : 1000);
      const v8Row = instances.find((i) => i.variant === v.id);
      const row: InstantiationRow = {
        variant: v.id,
        instantiateUs: summarize(probe.instantiateUs),
        instantiateCpuUs: summarize(probe.instantiateCpuUs),
        configureUs: summarize(probe.configureUs),
        rssPerInstanceBytes: probe.rssPerInstanceBytes,
        v8InstantiateUs: v8Row ? v8Row.instantiateMs.p50 * 1000 : undefined,
        v8RssPerInstanceBytes: v8Row?.bytesPerInstance.rss,
      };
      instantiation.push(row);
      log(`engines wasmtime instance ${v.label}: instantiate p50 ${row.instantiateUs.p50.toFixed(1)} µs (CPU ${row.instantiateCpuUs.p50.toFixed(1)}), configure p50 ${row.configureUs.p50.toFixed(1)} µs, ${fmtMiB(row.rssPerInstanceBytes)} MiB RSS each`);
    } finally {
      await v8.close();
      await wt.close();
    }
  }
  return { rows, instantiation };
}

export function engineTables(res: EngineResults): Table[] {
  if (res.skipped) return [{ title: 'Engines: V8 vs wasmtime', headers: ['skipped'], align: ['l'], rows: [[res.skipped]] }];
  const v8Of = (r: EngineRow): EngineRow | undefined =>
    res.rows.find((x) => x.engine === 'v8' && x.variant === r.variant && x.chain === r.chain && x.concurrency === r.concurrency);
  const calls: Table = {
    title: 'Engines: one requestHeaders phase over a chain, V8 vs wasmtime (same components, same run)',
    headers: ['component', 'filters', 'in flight', 'engine', 'p50 µs', 'p99 µs', 'chain runs/s', 'filter calls/s', 'CPU µs/run', 'p50 ÷ V8'],
    align: ['l', 'r', 'r', 'l', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows: [],
    notes: [
      'p50/p99: wall time from `chain.run` to its answer on the JavaScript side, crossing included.',
      'wasmtime per-request: every filter call gets a fresh instance (instantiate + configure + call).',
      'CPU µs/run: process CPU time (all threads) per chain run; less sensitive to other load than wall time.',
    ],
  };
  const engineOrder: EngineKind[] = ['v8', 'wasmtime', 'wasmtime per-request'];
  const sorted = res.rows.slice().sort((a, b) =>
    a.variant.localeCompare(b.variant) || a.chain - b.chain || a.concurrency - b.concurrency || engineOrder.indexOf(a.engine) - engineOrder.indexOf(b.engine));
  let last = '';
  for (const r of sorted) {
    const group = `${r.variant}/${r.chain}/${r.concurrency}`;
    if (last && group !== last) calls.rows.push([]);
    last = group;
    const base = v8Of(r);
    calls.rows.push([
      VARIANT_LABELS[r.variant], String(r.chain), String(r.concurrency), r.engine, fmt(r.us.p50), fmt(r.us.p99),
      fmtRate(r.runsPerSec), fmtRate(r.filterCallsPerSec), fmt(r.cpuUsPerRun), base ? fmtRatio(r.us.p50 / base.us.p50) : '–',
    ]);
  }
  const inst: Table = {
    title: 'Engines: a fresh instance (wasmtime per-request path vs V8)',
    headers: ['component', 'wasmtime instantiate p50 µs', 'p99 µs', 'CPU p50 µs', 'configure p50 µs', 'wasmtime MiB RSS/instance', 'V8 instantiate p50 µs', 'V8 MiB RSS/instance'],
    align: ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows: res.instantiation.map((r) => [
      VARIANT_LABELS[r.variant], fmt(r.instantiateUs.p50), fmt(r.instantiateUs.p99), fmt(r.instantiateCpuUs.p50), fmt(r.configureUs.p50),
      fmtMiB(r.rssPerInstanceBytes), r.v8InstantiateUs === undefined ? '–' : fmt(r.v8InstantiateUs), r.v8RssPerInstanceBytes === undefined ? '–' : fmtMiB(r.v8RssPerInstanceBytes),
    ]),
    notes: [
      'wasmtime: instantiate from the pooling allocator (copy-on-write memory image), dropped before the next, as a per-request call does.',
      'RSS per instance: configured instances held alive at once; V8 figures from the instances section of this run.',
    ],
  };
  return [calls, inst];
}
