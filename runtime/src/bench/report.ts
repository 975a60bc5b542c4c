/** Turns the measurements into tables (stdout, Markdown) and a JSON document. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CallRow } from './calls.js';
import type { InstanceRow } from './instances.js';
import { engineTables, type EngineResults } from './engines.js';
import { BUSY_CORES, type RunMeta } from './meta.js';
import { fmt, fmtMiB, fmtRate, fmtRatio, renderMarkdown, renderText, type Table } from './table.js';
import { VARIANT_LABELS, type PreparedVariants, type Variant, type VariantId } from './variants.js';

export interface Results {
  meta: RunMeta;
  variants: Array<{ id: VariantId; label: string; componentBytes: number | undefined; bundleBytes: number; sha256: string }>;
  skipped: PreparedVariants['skipped'];
  calls: Array<CallRow & { ratioToPlain: number; ratioToQuickjs: number }>;
  instances: InstanceRow[];
  engines: EngineResults;
}

const key = (r: Pick<CallRow, 'mode' | 'chain' | 'concurrency'>): string => `${r.mode}/${r.chain}/${r.concurrency}`;

const VARIANT_ORDER: VariantId[] = ['plain', 'quickjs', 'starlingmonkey'];

/** Scenario by scenario (raw before engine, short chain before long, sequential first), variants in a fixed order. */
function byScenario(a: CallRow, b: CallRow): number {
  return (a.mode === b.mode ? 0 : a.mode === 'raw' ? -1 : 1)
    || a.chain - b.chain
    || a.concurrency - b.concurrency
    || VARIANT_ORDER.indexOf(a.variant) - VARIANT_ORDER.indexOf(b.variant);
}

export function buildResults(
  meta: RunMeta, variants: Variant[], skipped: PreparedVariants['skipped'], calls: CallRow[], instances: InstanceRow[], engines: EngineResults,
): Results {
  const p50 = new Map(calls.map((r) => [`${key(r)}/${r.variant}`, r.us.p50]));
  return {
    meta,
    variants: variants.map((v) => ({ id: v.id, label: v.label, componentBytes: v.componentBytes, bundleBytes: v.bundleBytes, sha256: v.sha256 })),
    skipped,
    calls: calls.slice().sort(byScenario).map((r) => ({
      ...r,
      ratioToPlain: r.us.p50 / (p50.get(`${key(r)}/plain`) ?? Number.NaN),
      ratioToQuickjs: r.us.p50 / (p50.get(`${key(r)}/quickjs`) ?? Number.NaN),
    })),
    instances: instances.slice().sort((a, b) => VARIANT_ORDER.indexOf(a.variant) - VARIANT_ORDER.indexOf(b.variant)),
    engines,
  };
}

function scenario(r: Pick<CallRow, 'mode' | 'chain' | 'concurrency'>): string {
  const where = r.mode === 'raw' ? 'raw, in-process' : r.concurrency === 1 ? 'V8 engine, sequential' : `V8 engine, ${r.concurrency} in flight`;
  return `${where}, ${r.chain} filter${r.chain === 1 ? '' : 's'}`;
}

function callsTable(res: Results): Table {
  const rows: string[][] = [];
  let last = '';
  for (const r of res.calls) {
    const s = scenario(r);
    if (s !== last && last !== '') rows.push([]);
    rows.push([
      s === last ? '' : s,
      VARIANT_LABELS[r.variant],
      fmt(r.us.p50), fmt(r.us.p99), fmt(r.cpuUsPerRun), fmtRate(r.runsPerSec), fmtRate(r.filterCallsPerSec),
      r.variant === 'plain' ? '' : fmtRatio(r.ratioToPlain),
      r.variant === 'starlingmonkey' ? fmtRatio(r.ratioToQuickjs) : '',
    ]);
    last = s;
  }
  return {
    title: 'Per-call cost: one requestHeaders phase over the whole chain (one "run")',
    headers: ['scenario', 'variant', 'p50 µs', 'p99 µs', 'CPU µs/run', 'runs/s', 'filter calls/s', '× plain JS', '× QuickJS'],
    align: ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows,
    notes: [
      'ratios compare p50s of the same scenario; raw runs/s = 1e6 / mean; engine runs/s = completed runs / wall-clock time',
      'CPU µs/run: process CPU time (all threads, bench loop included) ÷ runs; for the engine it adds the main thread and the workers',
      `V8 engine: ${res.meta.workers} worker threads; "in flight" latency includes waiting in the engine's queue`,
    ],
  };
}

function instancesTable(res: Results): Table {
  return {
    title: 'Instances: creation from compiled modules, and memory kept per instance',
    headers: ['variant', 'component MiB', 'compile ms (once)', 'instantiate p50 ms', 'p99 ms', 'configure p50 ms', 'first call µs', 'RSS MiB/inst', 'JS heap MiB/inst', 'external MiB/inst', 'kept'],
    align: ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows: res.instances.map((r) => [
      VARIANT_LABELS[r.variant],
      r.componentBytes === undefined ? '–' : fmtMiB(r.componentBytes),
      r.variant === 'plain' ? '–' : fmt(r.compileMs),
      fmt(r.instantiateMs.p50), fmt(r.instantiateMs.p99), fmt(r.configureMs.p50), fmt(r.firstCallUs.p50),
      fmtMiB(r.bytesPerInstance.rss), fmtMiB(r.bytesPerInstance.heapUsed), fmtMiB(r.bytesPerInstance.external), String(r.count),
    ]),
    notes: [
      'one child process per variant (--expose-gc); memory = process.memoryUsage() delta after GC with all instances kept, ÷ kept',
      'each kept instance is configured and has served one call; "first call" is that call',
    ],
  };
}

/** Derived numbers: where the time goes. */
function derivedTable(res: Results): Table {
  const get = (mode: 'raw' | 'engine', chain: number, c: number, v: VariantId): CallRow | undefined =>
    res.calls.find((r) => r.mode === mode && r.chain === chain && r.concurrency === c && r.variant === v);
  const long = Math.max(...res.calls.map((r) => r.chain));
  const conc = Math.max(...res.calls.map((r) => r.concurrency));
  const rows = res.variants.map(({ id }) => {
    const raw1 = get('raw', 1, 1, id)?.us.p50 ?? Number.NaN;
    const rawN = get('raw', long, 1, id)?.us.p50 ?? Number.NaN;
    const eng1 = get('engine', 1, 1, id)?.us.p50 ?? Number.NaN;
    const engN = get('engine', long, 1, id)?.us.p50 ?? Number.NaN;
    const thr = get('engine', long, conc, id)?.filterCallsPerSec ?? Number.NaN;
    const inWorker = get('engine', 1, 1, id)?.inWorkerCallUs?.p50 ?? Number.NaN;
    return [VARIANT_LABELS[id], fmt(raw1), fmt((rawN - raw1) / (long - 1)), fmt(inWorker), fmt(eng1 - inWorker), fmt(engN / rawN), fmtRate(thr)];
  });
  return {
    title: 'Derived (from the p50s above)',
    headers: ['variant', 'raw µs, 1 filter', 'raw µs per extra filter', 'in-worker call µs', 'engine overhead µs', `engine/raw, ${long} filters`, `filter calls/s, engine, ${conc} in flight`],
    align: ['l', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows,
    notes: [
      `per extra filter = (raw ${long}-filter p50 − raw 1-filter p50) ÷ ${long - 1}`,
      'in-worker call = p50 of the filter call as the worker timed it (engine, sequential, 1 filter): the same call as "raw", but on a thread that slept since the last run',
      'engine overhead = engine sequential 1-filter p50 − in-worker call p50: the thread crossing, the queue and the chain bookkeeping',
    ],
  };
}

function header(res: Results): string {
  const m = res.meta;
  const others = (n: number | undefined): string => (n === undefined || Number.isNaN(n) ? '?' : n.toFixed(2));
  const load = `other processes used ${others(m.otherCores.before)} cores before and ${others(m.otherCores.duringCalls)} during the per-call runs`;
  const busy = Math.max(m.otherCores.before ?? 0, m.otherCores.duringCalls ?? 0) > BUSY_CORES
    ? `\n\nWARNING: the machine was busy (${load}): they competed for the CPU; numbers are inflated and noisy.`
    : '';
  const left = res.skipped.map((s) => `\n\nLEFT OUT: ${VARIANT_LABELS[s.id]}: ${s.reason}`).join('');
  return `Ambit filter bench: ${m.filter} — Node ${m.node}, ${m.cores} cores (${m.cpu}), ${m.date}${m.git ? `, git ${m.git.commit.slice(0, 10)}${m.git.dirty ? '+dirty' : ''}` : ''}; ${load}${m.quick ? ' — QUICK RUN' : ''}${busy}${left}`;
}

export function renderReportText(res: Results): string {
  return [
    header(res), '', renderText(callsTable(res)), '', renderText(derivedTable(res)), '', renderText(instancesTable(res)), '',
    ...engineTables(res.engines).flatMap((t) => [renderText(t), '']),
  ].join('\n');
}

export function renderReportMarkdown(res: Results): string {
  const m = res.meta;
  const sizes = res.variants
    .map((v) => `${v.label}: bundle ${(v.bundleBytes / 1024).toFixed(1)} KiB${v.componentBytes ? `, component ${fmtMiB(v.componentBytes)} MiB` : ''}`)
    .join('; ');
  return [
    `# Ambit filter bench results`,
    '',
    header(res),
    '',
    `Filter ${m.filter}; ${sizes}. Run took ${m.durationSec?.toFixed(0) ?? '?'} s. Numbers from one run on one machine: compare rows of the same run, not across runs.`,
    '',
    renderMarkdown(callsTable(res)),
    '',
    renderMarkdown(derivedTable(res)),
    '',
    renderMarkdown(instancesTable(res)),
    '',
    ...engineTables(res.engines).flatMap((t) => [renderMarkdown(t), '']),
  ].join('\n');
}

export async function writeResults(dir: string, res: Results): Promise<{ json: string; md: string }> {
  await mkdir(dir, { recursive: true });
  const json = path.join(dir, 'latest.json');
  const md = path.join(dir, 'latest.md');
  await writeFile(json, `${JSON.stringify(res, null, 2)}\n`);
  await writeFile(md, renderReportMarkdown(res));
  return { json, md };
}
