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

export async function measureEngine(
  chain: FilterChain, length: number, budget: LoopBudget, concurrency: number, what: string,
): Promise<LoopResult> {
  checkOutcome(await chain.run(requestInput()), length, what);
  return timeAsync(requestInput, (input) => chain.run(input), budget, concurrency);
}
