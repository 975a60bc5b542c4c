/**
 * Runs one phase across a chain, the way every engine must: request-side phases in
 * chain order, the response phase in reverse (like Envoy's encoder filters); header
 * changes applied as they go so each filter sees the previous ones' work; the first
 * respond/deny/retry ends the phase; a failing filter is handled by its policy.
 */
import { applyRequestOps, applyResponseOps, type HeaderOp, type LocalResponse, type PhaseName } from '@ambit/filter-sdk/host';
import type { FailurePolicy, FilterCall, FilterFailure, PhaseInput, PhaseOutcome, FailureKind } from './engine.js';

/** What the executor needs to know about each filter in the chain. */
export interface ChainMember {
  name: string;
  phases: ReadonlySet<PhaseName>;
  failurePolicy: FailurePolicy;
}

/** Thrown by a `call` implementation when the filter did not produce an action. */
export class FilterCallError extends Error {
  constructor(readonly kind: FailureKind, message: string) {
    super(message);
  }
}

export type ActionOf<P extends PhaseInput['phase']> =
  P extends 'connection' ? { tag: 'allow' } | { tag: 'deny'; val: string }
    : P extends 'requestHeaders' ? { tag: 'proceed'; val: HeaderOp[] } | { tag: 'respond'; val: LocalResponse }
      : { tag: 'proceed'; val: HeaderOp[] } | { tag: 'respond'; val: LocalResponse } | { tag: 'retry'; val: { delayMs: number; reason: string } };

export type CallFilter = (index: number, input: PhaseInput) => ActionOf<PhaseInput['phase']>;

/**
 * The response a fail-closed failure turns into: 503 naming the filter and the kind of
 * failure. The failure's message (an exception's text) is the operator's, in the log;
 * the client sees it only when `expose` is set (the binding's `exposeErrors`).
 */
export function failureResponse(f: { filter: string; kind: FailureKind; message: string }, expose = false): LocalResponse {
  return {
    status: 503,
    headers: [['content-type', 'text/plain; charset=utf-8'], ['x-ambit-filter-error', `${f.filter}; ${f.kind}`]],
    body: expose ? `filter ${f.filter} failed (${f.kind}): ${f.message}\n` : `filter ${f.filter} failed (${f.kind})\n`,
  };
}

/** Order in which members see a phase. */
export function phaseOrder(members: readonly ChainMember[], phase: PhaseName): number[] {
  const order: number[] = [];
  members.forEach((m, i) => { if (m.phases.has(phase)) order.push(i); });
  return phase === 'responseHeaders' ? order.reverse() : order;
}

export interface RunOptions {
  /** Skip entries of the phase order before this position (resuming after a stopped filter). */
  startAt?: number;
  /** Changes already made by filters before `startAt`. */
  priorOps?: HeaderOp[];
  /** Called before each filter call with (position in phase order, member index). */
  onEnter?: (position: number, member: number) => void;
  /** Called after a filter added ops, with the ops so far. */
  onProgress?: (position: number, ops: HeaderOp[]) => void;
  now?: () => number;
}

/**
 * Runs `input.phase` over `members`. `input` is mutated as filters change headers
 * (callers pass a copy they own).
 */
export function runPhase(members: readonly ChainMember[], input: PhaseInput, call: CallFilter, opts: RunOptions = {}): PhaseOutcome {
  const now = opts.now ?? (() => performance.now());
  const order = phaseOrder(members, input.phase);
  const ops: HeaderOp[] = opts.priorOps ? opts.priorOps.slice() : [];
  if (ops.length > 0) applyOps(input, ops);
  const calls: FilterCall[] = [];
  const failures: FilterFailure[] = [];
  for (let pos = opts.startAt ?? 0; pos < order.length; pos++) {
    const index = order[pos]!;
    const m = members[index]!;
    opts.onEnter?.(pos, index);
    const t0 = now();
    let action: ActionOf<PhaseInput['phase']>;
    try {
      action = call(index, input);
    } catch (e) {
      const kind = e instanceof FilterCallError ? e.kind : 'trap';
      const message = e instanceof Error ? e.message : String(e);
      calls.push({ filter: m.name, durationMs: now() - t0, outcome: kind });
      const failure = { filter: m.name, kind, message, policy: m.failurePolicy };
      failures.push(failure);
      if (m.failurePolicy === 'fail-open') continue;
      return closedOutcome(input, failure, calls, failures);
    }
    calls.push({ filter: m.name, durationMs: now() - t0, outcome: 'ok' });
    switch (action.tag) {
      case 'allow': break;
      case 'proceed':
        if (action.val.length > 0) {
          applyOps(input, action.val);
          for (const op of action.val) ops.push(op);
          opts.onProgress?.(pos, ops);
        }
        break;
      case 'deny': return { action: 'deny', reason: action.val, filter: m.name, calls, failures };
      case 'respond': return { action: 'respond', response: action.val, filter: m.name, calls, failures };
      case 'retry': return { action: 'retry', retry: action.val, filter: m.name, calls, failures };
    }
  }
  return { action: 'continue', ops, calls, failures };
}

/** The outcome of a fail-closed failure in `input.phase`. */
export function closedOutcome(input: PhaseInput, failure: FilterFailure, calls: FilterCall[], failures: FilterFailure[]): PhaseOutcome {
  if (input.phase === 'connection') {
    return { action: 'deny', reason: `filter ${failure.filter} failed (${failure.kind}): ${failure.message}`, filter: failure.filter, calls, failures };
  }
  return { action: 'respond', response: failureResponse(failure), filter: failure.filter, calls, failures };
}

function applyOps(input: PhaseInput, ops: readonly HeaderOp[]): void {
  if (input.phase === 'requestHeaders') applyRequestOps(input.request, ops);
  else if (input.phase === 'responseHeaders') applyResponseOps(input.response, ops);
}
