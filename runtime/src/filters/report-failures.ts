/**
 * How a chain's filter failures read, to operators and to clients — a seam around any
 * engine's chain (`chain => chain`):
 *
 * - a failure's message (a trap's exception and stack) is mapped from the bundle's
 *   positions to the filter's TypeScript source (`src/filter.ts:12:7`), through the
 *   source map the build stored in the component, and logged once by the caller's
 *   telemetry;
 * - the client of a fail-closed failure gets `503` naming the filter and the kind of
 *   failure, but not the exception text, unless the binding sets `exposeErrors`
 *   (for development: exception texts can carry request data).
 */
import type { SourceMapPayload } from 'node:module';
import { mapFilterStack, readSourceMap } from '../deps.js';
import { failureResponse } from './chain.js';
import { BASE_CHAIN, type FilterBinding, type FilterChain, type FilterFailure, type PhaseInput, type PhaseOutcome } from './engine.js';

interface FilterFacts {
  wasm: Uint8Array;
  sha256: string;
  map?: SourceMapPayload | null;
}

/**
 * Maps a failure's message to the TypeScript source of the filter it names, among `bindings`
 * (a name that stands for two different components is left as it is). Source maps are read
 * from the components on first use.
 */
export function failureMapper(bindings: Iterable<FilterBinding>): (f: FilterFailure) => FilterFailure {
  const facts = new Map<string, FilterFacts | null>();
  for (const b of bindings) {
    const known = facts.get(b.name);
    facts.set(b.name, known === undefined ? { wasm: b.wasm, sha256: b.sha256 } : known?.sha256 === b.sha256 ? known : null);
  }
  return (f) => {
    const fact = facts.get(f.filter);
    if (!fact) return f;
    if (fact.map === undefined) fact.map = readSourceMap(fact.wasm) ?? null;
    const message = mapFilterStack(f.message, fact.map ?? undefined);
    return message === f.message ? f : { ...f, message };
  };
}

export function reportFailures(chain: FilterChain, bindings: readonly FilterBinding[]): FilterChain & { [BASE_CHAIN]: FilterChain } {
  const mapped = failureMapper(bindings);
  const expose = new Set(bindings.filter((b) => b.exposeErrors === true).map((b) => b.name));
  return {
    [BASE_CHAIN]: chain,
    filters: chain.filters,
    async run(input: PhaseInput): Promise<PhaseOutcome> {
      const out = await chain.run(input);
      if (out.failures.length === 0) return out;
      const failures = out.failures.map(mapped);
      const closed = failures.find((f) => f.policy === 'fail-closed');
      if (closed && out.action === 'respond' && out.filter === closed.filter) {
        return { ...out, failures, response: failureResponse(closed, expose.has(closed.filter)) };
      }
      if (closed && out.action === 'deny' && out.filter === closed.filter) {
        return { ...out, failures, reason: `filter ${closed.filter} failed (${closed.kind}): ${closed.message}` };
      }
      return { ...out, failures };
    },
    close: () => chain.close(),
  };
}
