/**
 * Chains on V8 on the bench's own thread, called through the engines' chain executor
 * (`runPhase`: header changes applied as they go, as the V8 engine's workers do), with
 * no thread crossing: the 0.2 build through the SDK's host (`instantiateHandler`, as
 * `@ambit/filter-sdk/testing` does), and the 0.1 build (`v8-legacy.ts`).
 */
import {
  AmbitError, BINDING_DEFAULTS, compileCore, createHostImports, instantiateHandler, loadGlue, newCallScope, PHASE_NAMES,
  prepareComponent, runPhase, validateConfig, type CallFilter, type ChainMember, type FilterArtifact, type V8Binding,
} from './deps.js';
import { checkOutcome } from './chain-check.js';
import { memberConfig, requestInput } from './inputs.js';
import { timeSync, type LoopResult } from './loops.js';
import type { BenchOptions, LoopBudget } from './options.js';
import path from 'node:path';

export interface V8Chain {
  members: ChainMember[];
  call: CallFilter;
}

/** A chain of `length` instances of a 0.2 build, each configured as the i-th member, bound by `binding`. */
export async function currentChain(opts: BenchOptions, artifact: FilterArtifact, length: number, binding: V8Binding): Promise<V8Chain> {
  const prepared = await prepareComponent(artifact.wasm, { label: artifact.origin, cacheDir: path.join(opts.workDir, 'jco-cache') });
  const modules = await compileCore(prepared, BINDING_DEFAULTS.memoryMaxPages, artifact.name);
  const instantiate = await loadGlue(prepared.gluePath);
  const scope = newCallScope();
  scope.phase = 'requestHeaders';
  const members: ChainMember[] = [];
  const handlers = Array.from({ length }, (_, i) => {
    const name = `${artifact.name}-${i + 1}`;
    const host = createHostImports(name, artifact.capabilities, { log: () => {}, counter: () => {} }, { scope });
    const h = instantiateHandler(instantiate, modules, host, name, binding);
    const r = h.configure(JSON.stringify(validateConfig(artifact.schema, memberConfig(i), name)));
    if (r.tag === 'invalid') throw new AmbitError('AMBIT_ERR_CONFIG_REJECTED', `${name} rejected the bench config: ${r.val}`);
    members.push({ name, phases: new Set(PHASE_NAMES.filter((p) => r.val.phases[p])), failurePolicy: 'fail-closed' });
    return h;
  });
  return {
    members,
    call: (i, input) => {
      if (input.phase !== 'requestHeaders') throw new Error('the chain is measured on the request phase only');
      scope.directives = {};
      return handlers[i]!.onRequestHeaders(input.ctx, input.request);
    },
  };
}

/** Times the request phase over `chain`, after checking once that it adds each member's header. */
export function measureV8(chain: V8Chain, budget: LoopBudget, what: string): LoopResult {
  const run = (input: ReturnType<typeof requestInput>) => runPhase(chain.members, input, chain.call);
  checkOutcome(run(requestInput()), chain.members.length, what);
  return timeSync(requestInput, run, budget);
}
