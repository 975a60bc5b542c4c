/**
 * What it costs that every filter carries its own copy of the engine's code. A filter
 * built by the SDK is the same QuickJS engine code with its own pre-initialized memory,
 * yet each filter's component is compiled on its own, so a chain of different filters
 * runs several copies of the same interpreter code, and they compete for the core's
 * caches. Measured in-thread on wasmtime with the fault filter (which does its work on
 * this request), in chains of the same length:
 *
 * - one module: every member is an instance of one compiled component;
 * - copies: every member is its own component of identical code (the same bytes plus a
 *   custom section that no engine reads), compiled separately, as different filters are.
 *
 * The difference is what sharing the compiled engine code between filters would save.
 */
import type { FilterBinding } from '../filters/engine.js';
import { withCustomSection } from '@ambit/filter-sdk/build';
import { BUILTIN_CHAIN, builtinBindings, ensureBuiltinFilters } from './builtins.js';
import { sha256Hex, type SampleSummary } from './deps.js';
import { requestInput } from './inputs.js';
import type { BenchOptions } from './options.js';
import { benchPhase, openWasmtime } from './wasmtime-phase.js';

/** Chain length: as many as the built-ins. */
const LENGTH = BUILTIN_CHAIN.length;
const FILTER = 'fault';

export interface CodeSharingRow {
  how: 'one module' | 'copies';
  chain: number;
  us: SampleSummary;
  cpuUs: SampleSummary;
}

function copies(binding: FilterBinding, n: number): FilterBinding[] {
  return Array.from({ length: n }, (_, i) => {
    const wasm = withCustomSection(binding.wasm, 'ambit:bench-copy', Buffer.from(String(i)));
    return { ...binding, name: `${FILTER}-${i + 1}`, wasm, sha256: sha256Hex(wasm) };
  });
}

export async function measureCodeSharing(opts: BenchOptions, log: (line: string) => void): Promise<CodeSharingRow[]> {
  await ensureBuiltinFilters(log);
  const fault = (await builtinBindings()).find((b) => b.name === FILTER);
  if (!fault) throw new Error(`the ${FILTER} filter is not among the built-ins`);
  const engine = openWasmtime(opts);
  const rows: CodeSharingRow[] = [];
  try {
    const chains: Array<[CodeSharingRow['how'], FilterBinding[]]> = [
      ['one module', Array.from({ length: LENGTH }, (_, i) => ({ ...fault, name: `${FILTER}-${i + 1}` }))],
      ['copies', copies(fault, LENGTH)],
    ];
    for (const [how, bindings] of chains) {
      const chain = await engine.createChain(bindings);
      try {
        const r = benchPhase(engine, chain, requestInput(), opts.wasmtimeIterations);
        if (r.outcome.action !== 'continue' || r.outcome.calls.length !== LENGTH || r.outcome.failures.length > 0) {
          throw new Error(`${how}: expected ${LENGTH} calls that let the request through; got ${JSON.stringify(r.outcome)}`);
        }
        rows.push({ how, chain: LENGTH, us: r.phaseUs, cpuUs: r.phaseCpuUs });
        log(`code sharing, ${how}: ${LENGTH} × ${FILTER} p50 ${r.phaseUs.p50.toFixed(2)} µs (CPU ${r.phaseCpuUs.p50.toFixed(2)})`);
      } finally {
        await chain.close();
      }
    }
  } finally {
    await engine.close();
  }
  return rows;
}

