/**
 * The measured filter's request phase, one and `longChain` instances in a chain, side
 * by side in one run: the 0.1 build on V8 (jco, the 0.1 host), the 0.2 build on V8
 * through the SDK's host (its own binding for one-module components, and jco's glue),
 * and the 0.2 build on wasmtime. Everything in-thread: no crossing to a worker or an
 * engine thread.
 */
import { bindingFromArtifact } from '../filters/binding.js';
import { loadFilterArtifact, type FilterArtifact, type SampleSummary } from './deps.js';
import { checkOutcome } from './chain-check.js';
import { memberConfig, requestInput } from './inputs.js';
import type { BenchOptions } from './options.js';
import { sampleSummary as times } from './stats.js';
import { currentChain, measureV8 } from './v8-chain.js';
import { legacyChain } from './v8-legacy.js';
import { benchPhase, openWasmtime } from './wasmtime-phase.js';

export type Runner = 'v8-0.1' | 'v8-0.2' | 'v8-0.2-jco' | 'wasmtime-0.2';

export const RUNNERS: Record<Runner, { world: string; engine: string; how: string }> = {
  'v8-0.1': { world: '0.1', engine: 'V8', how: 'jco glue, 0.1 host (records lifted whole)' },
  'v8-0.2': { world: '0.2', engine: 'V8', how: "SDK host, its one-module binding (the default)" },
  'v8-0.2-jco': { world: '0.2', engine: 'V8', how: "SDK host, jco's glue (AMBIT_V8_BINDING=jco)" },
  'wasmtime-0.2': { world: '0.2', engine: 'wasmtime', how: '@ambit/native benchPhase, pooled instance' },
};

export interface HelloRow {
  runner: Runner;
  /** Filters in the chain. */
  chain: number;
  /** One request phase over the whole chain: wall time and CPU time, µs. */
  us: SampleSummary;
  cpuUs: SampleSummary;
  runs: number;
}


export interface HelloResults {
  /** sha256 and size of the two builds measured. */
  builds: Array<{ world: string; sha256: string; bytes: number; origin: string }>;
  rows: HelloRow[];
}

export async function measureHello(opts: BenchOptions, artifact: FilterArtifact, log: (line: string) => void): Promise<HelloResults> {
  const legacy = await loadFilterArtifact(`${opts.legacyDir}/filter.wasm`);
  const rows: HelloRow[] = [];
  const say = (r: HelloRow): void => log(`hello ${r.runner.padEnd(12)} chain ${r.chain}: p50 ${r.us.p50.toFixed(2)} µs (CPU ${r.cpuUs.p50.toFixed(2)}), ${r.runs} runs`);
  const lengths = [1, opts.longChain];

  for (const length of lengths) {
    const v8: Array<[Runner, () => ReturnType<typeof legacyChain>]> = [
      ['v8-0.1', () => legacyChain(opts, length)],
      ['v8-0.2', () => currentChain(opts, artifact, length, 'direct')],
      ['v8-0.2-jco', () => currentChain(opts, artifact, length, 'jco')],
    ];
    for (const [runner, make] of v8) {
      const r = measureV8(await make(), opts.v8, `${runner}, ${length} filter(s)`);
      const row: HelloRow = { runner, chain: length, us: times(r.samples), cpuUs: times(r.cpuSamples), runs: r.samples.length };
      rows.push(row);
      say(row);
    }
  }

  const engine = openWasmtime(opts);
  try {
    for (const length of lengths) {
      const bindings = Array.from({ length }, (_, i) => bindingFromArtifact(artifact, { name: `${artifact.name}-${i + 1}`, config: memberConfig(i) }));
      const chain = await engine.createChain(bindings);
      const r = benchPhase(engine, chain, requestInput(), opts.wasmtimeIterations);
      checkOutcome(r.outcome, length, `wasmtime, ${length} filter(s)`);
      const row: HelloRow = { runner: 'wasmtime-0.2', chain: length, us: r.phaseUs, cpuUs: r.phaseCpuUs, runs: r.iterations };
      rows.push(row);
      say(row);
      await chain.close();
    }
  } finally {
    await engine.close();
  }
  return {
    builds: [legacy, artifact].map((a) => ({ world: a === legacy ? '0.1' : '0.2', sha256: a.sha256, bytes: a.wasm.length, origin: a.origin })),
    rows,
  };
}
