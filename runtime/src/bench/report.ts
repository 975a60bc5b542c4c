/** Turns the filter ABI measurements into tables (stdout, Markdown) and a JSON document. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AbiResults } from './abi.js';
import { fusionVerdict } from './fusion.js';
import { RUNNERS } from './hello.js';
import { BUSY_CORES, type RunMeta } from './meta.js';
import { fmt, fmtMiB, fmtRatio, renderMarkdown, renderText, type Table } from './table.js';

export interface Results {
  meta: RunMeta;
  abi: AbiResults;
}

const yes = (b: boolean | undefined): string => (b === undefined ? '–' : b ? 'yes' : 'NO');

function goalsTable(res: Results): Table {
  return {
    title: 'Goals of issue 12 (filter ABI)',
    headers: ['what', 'goal', 'measured', 'in CPU time', 'met', 'met in CPU time'],
    align: ['l', 'r', 'r', 'r', 'l', 'l'],
    rows: res.abi.goals.map((g) => [
      g.what, `≤ ${g.limit} ${g.unit}`, `${g.unit === 'MiB' ? g.value.toFixed(3) : fmt(g.value)} ${g.unit}`,
      g.cpuValue === undefined ? '–' : `${fmt(g.cpuValue)} ${g.unit}`, yes(g.met), yes(g.metByCpu),
    ]),
    notes: [
      'measured: p50 wall time (memory: resident bytes per held instance); in CPU time: p50 of the thread\'s CPU time for the same calls, which other processes on the machine do not inflate',
    ],
  };
}

function helloTable(res: Results): Table {
  const base = new Map(res.abi.hello.rows.filter((r) => r.runner === 'v8-0.1').map((r) => [r.chain, r.us.p50]));
  const rows: string[][] = [];
  let last = 0;
  for (const r of res.abi.hello.rows.slice().sort((a, b) => a.chain - b.chain)) {
    if (last && r.chain !== last) rows.push([]);
    last = r.chain;
    const k = RUNNERS[r.runner];
    rows.push([
      String(r.chain), k.world, k.engine, k.how, fmt(r.us.p50), fmt(r.us.p99), fmt(r.us.mean), fmt(r.cpuUs.p50), fmt(r.cpuUs.mean),
      fmtRatio(r.us.p50 / (base.get(r.chain) ?? Number.NaN)), String(r.runs),
    ]);
  }
  return {
    title: `${res.meta.filter}: one request phase (20 headers) over a chain, in-thread, 0.1 vs 0.2 builds`,
    headers: ['filters', 'world', 'engine', 'how', 'p50 µs', 'p99 µs', 'mean µs', 'CPU p50 µs', 'CPU mean µs', '× 0.1 on V8', 'runs'],
    align: ['r', 'l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows,
    notes: [
      'in-thread: called on the bench\'s own thread through the chain executor (header changes applied as they go), no crossing to a worker or engine thread',
      'V8: the bench\'s loop times each phase (performance.now) and its process CPU time (process.cpuUsage); wasmtime: benchPhase times each phase in native code (wall and thread CPU)',
      `0.1: ${res.abi.hello.builds.find((b) => b.world === '0.1')?.origin} (built by the 0.1 SDK); 0.2: the filter built by this SDK`,
    ],
  };
}

function builtinsTable(res: Results): Table {
  return {
    title: 'Six built-in filters (authz → ratelimit → fault → traffic-split → headers → retry), one request, in-thread on wasmtime',
    headers: ['chain', 'request p50 µs', 'p99 µs', 'CPU p50 µs', 'response p50 µs', 'p99 µs', 'CPU p50 µs', 'both p50 µs', 'both CPU p50 µs'],
    align: ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows: res.abi.builtins.map((r) => [
      r.what === 'chain' ? 'all six' : `${r.what} alone`,
      fmt(r.request.us.p50), fmt(r.request.us.p99), fmt(r.request.cpuUs.p50),
      r.response.calls ? fmt(r.response.us.p50) : '(no response phase)', r.response.calls ? fmt(r.response.us.p99) : '', r.response.calls ? fmt(r.response.cpuUs.p50) : '',
      fmt(r.request.us.p50 + r.response.us.p50), fmt(r.request.cpuUs.p50 + r.response.cpuUs.p50),
    ]),
    notes: [
      'configs: runtime/src/bench/builtins.ts; every filter works on this request (authz matches a policy, ratelimit takes a token from the shared table, fault draws, traffic-split routes, headers sets and removes, retry sets the per-try timeout and checks the response)',
      'both = request p50 + response p50 (each phase timed on its own)',
    ],
  };
}

function instancesTable(res: Results): Table {
  const i = res.abi.instances;
  return {
    title: 'A fresh instance per request on wasmtime (pooling allocator, copy-on-write image of the pre-initialized guest)',
    headers: ['step', 'p50 µs', 'p99 µs', 'mean µs', 'CPU p50 µs'],
    align: ['l', 'r', 'r', 'r', 'r'],
    rows: [
      ['instantiate', fmt(i.instantiateUs.p50), fmt(i.instantiateUs.p99), fmt(i.instantiateUs.mean), fmt(i.instantiateCpuUs.p50)],
      ['configure', fmt(i.configureUs.p50), fmt(i.configureUs.p99), fmt(i.configureUs.mean), fmt(i.configureCpuUs.p50)],
      ['ready to call (both)', fmt(i.readyUs.p50), fmt(i.readyUs.p99), fmt(i.readyUs.mean), fmt(i.readyCpuUs.p50)],
    ],
    notes: [
      `${i.count} instances, each dropped before the next (as a per-request binding does); memory per configured instance (50 held at once): ${fmtMiB(i.privatePerInstanceBytes)} MiB its own (anonymous pages: what it wrote, its stacks and heaps; what one more instance costs), ${fmtMiB(i.rssPerInstanceBytes)} MiB resident in all (also the copy-on-write image pages it only read, which every instance of the filter shares)`,
    ],
  };
}

function fusionTable(res: Results): Table {
  const n = res.abi.fusion[0]?.length ?? 0;
  const noop = res.abi.entries.map((e) => `no-op filter on wasmtime, ${e.chain}: p50 ${fmt(e.us.p50)} µs, CPU ${fmt(e.cpuUs.p50)} µs`).join('; ');
  return {
    title: `Fusing a chain: ${n} instances of the filter (one guest entry each) vs one, and what an entry costs`,
    headers: ['engine', '1 filter CPU µs', `${n} filters CPU µs`, 'each further filter CPU µs', '(wall µs)', 'one entry (no-op) CPU µs', 'entries share of the phase', `fused ${n} filters CPU µs`, 'entries dominate'],
    align: ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    rows: res.abi.fusion.map((f) => [
      `${RUNNERS[f.runner].engine} ${RUNNERS[f.runner].world}`, fmt(f.oneCpuUs), fmt(f.chainCpuUs), fmt(f.perFilterCpuUs), fmt(f.perFilterUs),
      fmt(f.entryCpuUs), `${Math.round(f.entriesShare * 100)}%`, fmt(f.fusedCpuUs), yes(f.entriesDominate),
    ]),
    notes: [...res.abi.fusion.map(fusionVerdict), `p50s; ${noop}; one entry = (${n} no-op − 1 no-op) ÷ ${n - 1}; fused = ${n}-filter phase − ${n - 1} entries`],
  };
}

function codeSharingTable(res: Results): Table {
  const rows = res.abi.codeSharing;
  const one = rows.find((r) => r.how === 'one module');
  const copies = rows.find((r) => r.how === 'copies');
  const n = one?.chain ?? 0;
  return {
    title: `Engine code per filter: a chain of ${n} instances of one compiled filter vs ${n} separately compiled copies of identical code (wasmtime, in-thread)`,
    headers: ['chain', 'p50 µs', 'p99 µs', 'CPU p50 µs', 'per filter CPU µs', '× one module'],
    align: ['l', 'r', 'r', 'r', 'r', 'r'],
    rows: rows.map((r) => [
      `${r.chain} × fault, ${r.how}`, fmt(r.us.p50), fmt(r.us.p99), fmt(r.cpuUs.p50), fmt(r.cpuUs.p50 / r.chain),
      one ? fmtRatio(r.cpuUs.p50 / one.cpuUs.p50) : '–',
    ]),
    notes: [
      'copies: the same component bytes with a custom section no engine reads, so each is compiled on its own, as different filters built by the SDK are (the same QuickJS code, their own pre-initialized memory)',
      ...(one && copies ? [`sharing the compiled engine code between filters would save about ${fmt(copies.cpuUs.p50 - one.cpuUs.p50)} µs CPU on this ${n}-filter phase`] : []),
    ],
  };
}

function header(res: Results): string {
  const m = res.meta;
  const n = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '?' : x.toFixed(2));
  const la = (a: number[] | undefined): string => (a ? a.map((x) => x.toFixed(1)).join(' / ') : '?');
  const load = `machine load: other processes used ${n(m.otherCores.before)} cores before and ${n(m.otherCores.during)} during the measurements; load average (1/5/15 min) ${la(m.loadAverage.start)} at start, ${la(m.loadAverage.end)} at end`;
  const busy = Math.max(m.otherCores.before ?? 0, m.otherCores.during ?? 0) > BUSY_CORES
    ? `\n\nWARNING: the machine was busy: other processes competed for the ${m.cores} cores, so wall times are inflated and noisy; read the CPU-time columns.`
    : '';
  return `Ambit filter ABI bench: ${m.filter} — Node ${m.node}, ${m.cores} cores (${m.cpu}), ${m.date}${m.git ? `, git ${m.git.commit.slice(0, 10)}${m.git.dirty ? '+dirty' : ''}` : ''}${m.quick ? ' — QUICK RUN' : ''}\n\n${load}${busy}`;
}

const tables = (res: Results): Table[] => [goalsTable(res), helloTable(res), builtinsTable(res), instancesTable(res), fusionTable(res), codeSharingTable(res)];

export function renderReportText(res: Results): string {
  return [header(res), '', ...tables(res).flatMap((t) => [renderText(t), ''])].join('\n');
}

export function renderReportMarkdown(res: Results): string {
  const sizes = res.abi.hello.builds.map((b) => `${b.world}: ${fmtMiB(b.bytes)} MiB, sha256 ${b.sha256.slice(0, 16)}…`).join('; ');
  return [
    '# Ambit filter ABI bench results',
    '',
    header(res),
    '',
    `Components: ${sizes}. Run took ${res.meta.durationSec?.toFixed(0) ?? '?'} s. Numbers from one run on one machine: compare rows of the same run, not across runs.`,
    '',
    ...tables(res).flatMap((t) => [renderMarkdown(t), '']),
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
