/**
 * The six built-in filters in chain order, both phases of one request, on wasmtime
 * in-thread (`benchPhase`): the whole chain, and each filter alone. Configured as in
 * `builtins.ts`, where every filter does its work on this request: authz matches an
 * ALLOW policy, ratelimit takes a token from the shared table, fault draws, traffic-split
 * picks a subset, headers sets (with a substitution) and removes, retry sets the per-try
 * timeout and checks the response.
 */
import type { FilterBinding, PhaseInput, SampleSummary } from './deps.js';
import { builtinBindings, ensureBuiltinFilters } from './builtins.js';
import { requestInput, responseInput } from './inputs.js';
import type { BenchOptions } from './options.js';
import { benchPhase, openWasmtime, type PhaseTimes } from './wasmtime-phase.js';

export interface BuiltinRow {
  /** `chain`, or the name of the filter measured alone. */
  what: string;
  request: PhaseRow;
  response: PhaseRow;
}

export interface PhaseRow {
  us: SampleSummary;
  cpuUs: SampleSummary;
  /** Filters the phase called (not every filter has a response phase). */
  calls: number;
}

/** The phase went through the chain without a failure and let the request through; its row. */
function checked(t: PhaseTimes, what: string): PhaseRow {
  const o = t.outcome;
  if (o.action !== 'continue' || o.failures.length > 0 || o.calls.some((c) => c.outcome !== 'ok')) {
    throw new Error(`${what}: expected the filters to let the request through; got ${o.action} ${JSON.stringify(o.failures)}`);
  }
  return { us: t.phaseUs, cpuUs: t.phaseCpuUs, calls: o.calls.length };
}

export async function measureBuiltins(opts: BenchOptions, log: (line: string) => void): Promise<BuiltinRow[]> {
  await ensureBuiltinFilters(log);
  const all = await builtinBindings();
  const engine = openWasmtime(opts);
  const rows: BuiltinRow[] = [];
  const phase = async (bindings: FilterBinding[], what: string): Promise<BuiltinRow> => {
    const chain = await engine.createChain(bindings);
    try {
      const run = (input: PhaseInput, name: string): PhaseRow => checked(benchPhase(engine, chain, input, opts.wasmtimeIterations), `${what}, ${name}`);
      const row = { what, request: run(requestInput(), 'request phase'), response: run(responseInput(), 'response phase') };
      if (what === 'chain' && row.request.calls !== bindings.length) {
        throw new Error(`the built-in chain's request phase called ${row.request.calls} of ${bindings.length} filters`);
      }
      log(`built-ins ${what.padEnd(14)} request p50 ${row.request.us.p50.toFixed(2)} µs, response p50 ${row.response.us.p50.toFixed(2)} µs`);
      return row;
    } finally {
      await chain.close();
    }
  };
  try {
    rows.push(await phase(all, 'chain'));
    for (const b of all) rows.push(await phase([b], b.name));
  } finally {
    await engine.close();
  }
  return rows;
}
