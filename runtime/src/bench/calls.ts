/**
 * Section 1: per-call cost of a 1-filter and a long chain, for every variant, raw
 * in-process and through the V8 engine (sequential and concurrent).
 */
import { loadFactory } from './factory.js';
import type { LoopResult } from './loops.js';
import type { BenchOptions } from './options.js';
import { createRawChain, measureRaw } from './raw.js';
import { summarize, type Summary } from './stats.js';
import { bindings, measureEngine, openEngine } from './through-engine.js';
import { engineCacheDir, type Variant, type VariantId } from './variants.js';

export type Mode = 'raw' | 'engine';

export interface CallRow {
  mode: Mode;
  /** Filters in the chain. */
  chain: number;
  /** Phases in flight (1 = one after the other). */
  concurrency: number;
  variant: VariantId;
  /** Microseconds per chain run (one `requestHeaders` phase over the whole chain). */
  us: Summary;
  /** Chain runs per second. Raw: 1e6 / mean (back to back on one thread). Engine: completed / wall-clock. */
  runsPerSec: number;
  /** runsPerSec × chain length. */
  filterCallsPerSec: number;
  /**
   * Process CPU time (every thread: the bench, the engine's workers) per run, in µs.
   * Less sensitive than wall-clock time to other processes competing for the cores.
   */
  cpuUsPerRun: number;
  /** Engine only: each filter call as timed inside the worker (µs), i.e. without the thread crossing. */
  inWorkerCallUs: Summary | undefined;
  cappedByTime: boolean;
}

function row(mode: Mode, chain: number, concurrency: number, variant: VariantId, r: LoopResult & { inWorkerCallUs?: number[] }): CallRow {
  const us = summarize(r.samples);
  const runsPerSec = mode === 'raw' ? 1e6 / us.mean : (us.count / r.elapsedMs) * 1000;
  return {
    mode, chain, concurrency, variant, us, runsPerSec, filterCallsPerSec: runsPerSec * chain,
    cpuUsPerRun: (r.cpuMs * 1000) / Math.max(1, us.count),
    inWorkerCallUs: r.inWorkerCallUs ? summarize(r.inWorkerCallUs) : undefined,
    cappedByTime: r.cappedByTime,
  };
}

export async function measureCalls(opts: BenchOptions, variants: Variant[], log: (line: string) => void): Promise<CallRow[]> {
  const rows: CallRow[] = [];
  const lengths = [1, opts.longChain];

  for (const v of variants) {
    const { create } = await loadFactory(v.load, v.name);
    for (const length of lengths) {
      const chain = createRawChain(v, create, length);
      const r = measureRaw(chain, opts.raw, `${v.label}, raw, ${length} filter(s)`);
      rows.push(row('raw', length, 1, v.id, r));
      log(`raw    ${v.label.padEnd(18)} chain ${length}: p50 ${summarize(r.samples).p50.toFixed(1)} µs (${r.samples.length} runs)`);
    }
  }

  for (const v of variants) {
    const engine = openEngine(opts.workers, engineCacheDir(opts));
    try {
      for (const length of lengths) {
        const chain = await engine.createChain(bindings(v, length));
        for (const concurrency of [1, opts.concurrency]) {
          const what = `${v.label}, engine, ${length} filter(s), ${concurrency} in flight`;
          const r = await measureEngine(chain, length, opts.engine, concurrency, what);
          rows.push(row('engine', length, concurrency, v.id, r));
          log(`engine ${v.label.padEnd(18)} chain ${length} c${String(concurrency).padEnd(2)}: p50 ${summarize(r.samples).p50.toFixed(1)} µs (${r.samples.length} runs)`);
        }
        await chain.close();
      }
    } finally {
      await engine.close();
    }
  }
  return rows;
}
