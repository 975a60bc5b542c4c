/**
 * What entering a filter costs on wasmtime, apart from the filter's work: the request
 * phase over 1 and N instances of a filter that does nothing (`bench/fixtures/noop`),
 * in-thread (`benchPhase`). What each further no-op filter adds is one more guest entry
 * (instance taken from the pool, resources lent, the guest's dispatch, the action
 * returned): what fusing a chain into one instance would save per filter.
 */
import path from 'node:path';
import { bindingFromArtifact } from '../filters/binding.js';
import { buildCopy } from './builds.js';
import { loadFilterArtifact, type SampleSummary } from './deps.js';
import { requestInput } from './inputs.js';
import type { BenchOptions } from './options.js';
import { benchPhase, openWasmtime } from './wasmtime-phase.js';

export interface EntryRow {
  chain: number;
  us: SampleSummary;
  cpuUs: SampleSummary;
}

export async function measureEntries(opts: BenchOptions, log: (line: string) => void): Promise<EntryRow[]> {
  const artifact = await loadFilterArtifact(await buildCopy(opts, path.join(opts.repoRoot, 'bench/fixtures/noop'), log));
  const engine = openWasmtime(opts);
  const rows: EntryRow[] = [];
  try {
    for (const length of [1, opts.longChain]) {
      const chain = await engine.createChain(Array.from({ length }, (_, i) => bindingFromArtifact(artifact, { name: `noop-${i + 1}` })));
      const r = benchPhase(engine, chain, requestInput(), opts.wasmtimeIterations);
      const o = r.outcome;
      if (o.action !== 'continue' || o.calls.length !== length || o.failures.length > 0 || o.ops.length > 0) {
        throw new Error(`no-op chain of ${length}: expected ${length} calls that change nothing; got ${o.action} ${JSON.stringify(o)}`);
      }
      rows.push({ chain: length, us: r.phaseUs, cpuUs: r.phaseCpuUs });
      log(`no-op chain ${length}: p50 ${r.phaseUs.p50.toFixed(2)} µs (CPU ${r.phaseCpuUs.p50.toFixed(2)})`);
      await chain.close();
    }
  } finally {
    await engine.close();
  }
  return rows;
}
