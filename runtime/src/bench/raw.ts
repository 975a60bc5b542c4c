/**
 * Raw in-process cost: instances on the bench's own thread, called directly through
 * their `Handler` (jco glue → Wasm, or plain JS), with the chain executor the
 * engine's workers use (`runPhase`). No thread crossing, no queue.
 */
import { runPhase, type ChainMember, type Handler } from './deps.js';
import { checkOutcome } from './chain-check.js';
import { configure, memberConfigJson, quietHost } from './factory.js';
import { requestInput } from './inputs.js';
import { timeSync, type LoopResult } from './loops.js';
import type { LoopBudget } from './options.js';
import type { HandlerFactory } from './plain-js.js';
import type { Variant } from './variants.js';

export interface RawChain {
  members: ChainMember[];
  handlers: Handler[];
}

export function createRawChain(variant: Variant, create: HandlerFactory, length: number): RawChain {
  const members: ChainMember[] = [];
  const handlers: Handler[] = [];
  for (let i = 0; i < length; i++) {
    const name = `${variant.name}-${i + 1}`;
    const h = create(quietHost(name, variant.capabilities));
    const phases = configure(h, memberConfigJson(variant.schema, i, name), `${variant.label} ${name}`);
    members.push({ name, phases, failurePolicy: 'fail-closed' });
    handlers.push(h);
  }
  return { members, handlers };
}

export function measureRaw(chain: RawChain, budget: LoopBudget, what: string): LoopResult {
  const { members, handlers } = chain;
  const call = (i: number, input: ReturnType<typeof requestInput>) => handlers[i]!.onRequestHeaders(input.ctx, input.request);
  const runOnce = (input: ReturnType<typeof requestInput>) => runPhase(members, input, (i, inp) => call(i, inp as typeof input));
  checkOutcome(runOnce(requestInput()), members.length, what);
  return timeSync(requestInput, runOnce, budget);
}
