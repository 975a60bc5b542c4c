/**
 * Phases on wasmtime on the bench's own thread: `WasmtimeEngine.benchPhase` runs one
 * phase of a chain in native code (instances pooled and warm, the engine's own chain
 * executor, no crossing to the engine's threads) and times each run in wall and thread
 * CPU time. Called once to warm up (instances created, caches filled), then measured.
 */
import path from 'node:path';
import { WasmtimeEngine, type FilterChain, type PhaseBench, type PhaseInput, type PhaseOutcome, type SampleSummary } from './deps.js';
import type { BenchOptions } from './options.js';

/** `benchPhase`'s answer with the thread CPU time it reports. */
export interface PhaseTimes {
  iterations: number;
  phaseUs: SampleSummary;
  phaseCpuUs: SampleSummary;
  outcome: PhaseOutcome;
}

/**
 * `keepResidentBytes`: the engine's default (pooled slots keep their pages resident and
 * are reset in place), or 0 for measuring memory: a slot's pages are then given back when
 * its instance is dropped, so the resident memory of held instances is theirs alone.
 */
export function openWasmtime(opts: BenchOptions, keepResidentBytes?: number): WasmtimeEngine {
  return new WasmtimeEngine({ threads: 1, cacheDir: path.join(opts.workDir, 'wasmtime-cache'), onLog: () => {}, onCounter: () => {}, keepResidentBytes });
}

export function benchPhase(engine: WasmtimeEngine, chain: FilterChain, input: PhaseInput, iterations: number): PhaseTimes {
  engine.benchPhase(chain, input, Math.max(100, Math.round(iterations / 4)));
  const r = engine.benchPhase(chain, input, iterations) as PhaseBench & { phaseCpuUs?: SampleSummary };
  if (!r.phaseCpuUs) throw new Error('@ambit/native answered benchPhase without phaseCpuUs: rebuild it (npm run build)');
  return { iterations: r.iterations, phaseUs: r.phaseUs, phaseCpuUs: r.phaseCpuUs, outcome: r.outcome as unknown as PhaseOutcome };
}
