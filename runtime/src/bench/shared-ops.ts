/**
 * Shared storage (capability `shared`), one operation at a time: the node-wide table (a
 * mapped file shared by every proxy process, through the C addon) next to the in-process
 * table in a SharedArrayBuffer (the SDK harness's, and the V8 engine's fallback), in one
 * run. Batches of a fixed count, alternating tables so drift hits both. Not a test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { openSharedTable } from '@ambit/addon/shared';
import { SharedTable, type SharedStore } from '../deps.js';
import { sharedDirBase } from '../filters/shared-dir.js';
import { summarize, type Summary } from './stats.js';

export interface SharedOpsResult {
  batch: number;
  batches: number;
  /** ns per operation, over batches. */
  rows: Array<{ op: 'get' | 'set' | 'add'; table: string; ns: Summary }>;
}

const OPS = {
  get: (t: SharedStore, i: number) => void t.get(`k${i & 255}`),
  set: (t: SharedStore, i: number) => void t.set(`k${i & 255}`, `${i}:1700000000000`, t.get(`k${i & 255}`)?.version ?? 0),
  add: (t: SharedStore, i: number) => void t.add(`n${i & 255}`, 1),
} as const;

export function runSharedOpsBench(options: { batch?: number; batches?: number } = {}): SharedOpsResult {
  const batch = options.batch ?? 1000;
  const batches = options.batches ?? 200;
  const dir = mkdtempSync(path.join(sharedDirBase(), 'ambit-bench-shared-'));
  try {
    const tables: Array<[string, SharedStore]> = [
      ['node-wide (mapped file, C addon)', openSharedTable(dir, 'bench/ratelimit')],
      ['in-process (SharedArrayBuffer)', SharedTable.create()],
    ];
    // Every key present: a get copies a value out, as the rate limit's do.
    for (const [, t] of tables) for (let i = 0; i < 256; i++) t.set(`k${i}`, `${i}:1700000000000`, 0);
    const rows: SharedOpsResult['rows'] = [];
    for (const op of ['get', 'set', 'add'] as const) {
      const samples = tables.map(() => [] as number[]);
      for (let b = 0; b < batches + 10; b++) {
        tables.forEach(([, t], k) => {
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < batch; i++) OPS[op](t, i);
          // The first 10 batches warm up the JIT.
          if (b >= 10) samples[k]!.push(Number(process.hrtime.bigint() - t0) / batch);
        });
      }
      tables.forEach(([name], k) => rows.push({ op, table: name, ns: summarize(samples[k]!) }));
    }
    return { batch, batches, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function renderSharedOps(r: SharedOpsResult): string {
  const f = (n: number) => n.toFixed(0);
  return [
    `Shared storage, one operation (ns), ${r.batches} batches of ${r.batch}; set is a get then a compare-and-set`,
    '',
    '| op | table | p50 ns | p99 ns |',
    '|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.op} | ${x.table} | ${f(x.ns.p50)} | ${f(x.ns.p99)} |`),
  ].join('\n');
}
