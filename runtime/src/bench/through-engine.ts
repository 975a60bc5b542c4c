/**
 * Cost through the V8 engine: `chain.run` posts the phase to a worker thread, which
 * runs the whole chain and posts the outcome back. Measured one at a time
 * (latency of a lone request) and with many phases in flight (throughput).
 */
import { V8Engine, validateConfig, type FilterBinding, type FilterChain } from './deps.js';
import { checkOutcome } from './chain-check.js';
import { memberConfig, requestInput } from './inputs.js';
import { timeAsync, type LoopResult } from './loops.js';
import type { LoopBudget } from './options.js';
import type { Variant } from './variants.js';

export function bindings(variant: Variant, length: number): FilterBinding[] {
  return Array.from({ length }, (_, i) => {
    const name = `${variant.name}-${i + 1}`;
    return {
      name,
      wasm: variant.wasm,
      sha256: variant.sha256,
      capabilities: variant.capabilities,
      config: validateConfig(variant.schema, memberConfig(i), name),
    };
  });
}

export function openEngine(workers: number, cacheDir: string): V8Engine {
  return new V8Engine({ workers, cacheDir, onLog: () => {}, onCounter: () => {} });
}

export interface EngineResult extends LoopResult {
  /** Each filter call's duration as the worker measured it (µs): the call alone, without the crossing. */
  inWorkerCallUs: number[];
}

export async function measureEngine(
  chain: FilterChain, length: number, budget: LoopBudget, concurrency: number, what: string,
): Promise<EngineResult> {
  checkOutcome(await chain.run(requestInput()), length, what);
  const inWorkerCallUs: number[] = [];
  let measuring = false;
  const run = async (input: ReturnType<typeof requestInput>): Promise<void> => {
    const outcome = await chain.run(input);
    if (measuring) for (const c of outcome.calls) inWorkerCallUs.push(c.durationMs * 1000);
  };
  const r = await timeAsync(requestInput, run, budget, concurrency, () => { measuring = true; });
  return { ...r, inWorkerCallUs };
}
