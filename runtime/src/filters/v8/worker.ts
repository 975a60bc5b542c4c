/**
 * A V8 filter worker: holds one warm instance of every loaded filter and runs whole
 * phases of a chain per message, so one thread crossing serves the chain. Runs one
 * phase at a time; the main thread stops it (terminate) when a call overruns its
 * deadline, which loses nothing but that call.
 */
import { parentPort, workerData } from 'node:worker_threads';
import {
  AmbitError, bindingOf, checkResultSize, createHostImports, errorMessage, freshBudget, instantiateHandler, loadGlue, newCallScope, SharedTable,
  type Handler, type HeaderOp, type HostImports, type PhaseName, type SharedStore,
} from '../../deps.js';
import { openSharedTable } from '@ambit/addon/shared';
import { phaseOrder, runPhase, type ActionOf, type ChainMember } from '../chain.js';
import type { PhaseInput } from '../engine.js';
import { CTRL, PROGRESS_BYTES, sharedNow, type CounterAdd, type LoadFilter, type LogLine, type SharedControl, type ToWorker, type FromWorker } from './protocol.js';

interface Slot {
  name: string;
  create: () => Handler;
  handler: Handler | undefined;
  perRequest: boolean;
}

interface WorkerChain {
  members: ChainMember[];
  keys: string[];
  /** Some member fails open: keep the progress area up to date. */
  failOpen: boolean;
}

const port = parentPort!;
const shared = workerData as SharedControl;
const ctrl = new Int32Array(shared.ctrl);
const started = new Float64Array(shared.started);
const progress = new Uint8Array(shared.progress);
const encoder = new TextEncoder();

const slots = new Map<string, Slot>();
/** The call in progress: its phase and facts, and the directives request-phase filters give. */
const scope = newCallScope();
const chains = new Map<number, WorkerChain>();
let logs: LogLine[] = [];
let counters: CounterAdd[] = [];
/** What the filter said just before its current call trapped. */
let reported: string | undefined;
const sink = {
  log: (filter: string, level: LogLine[1], message: string) => { logs.push([filter, level, message]); },
  counter: (filter: string, name: string, delta: number) => { counters.push([filter, name, delta]); },
  reportError: (_filter: string, message: string) => { reported = message; },
};

function post(msg: FromWorker): void {
  port.postMessage(msg);
}

function openShared(spec: LoadFilter['shared']): SharedStore | undefined {
  if (!spec) return undefined;
  if ('buffer' in spec) return new SharedTable(spec.buffer);
  // The main thread opened it first (and reported any error); this finds the same mapping.
  // A bad key, value or delta throws with code AMBIT_ERR_HOST_CALL, which traps the call.
  return openSharedTable(spec.dir, spec.scope, spec.maxKeys);
}

async function load(msg: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  try {
    const instantiate = await loadGlue(msg.gluePath);
    const host: HostImports = createHostImports(msg.name, msg.capabilities, sink, {
      scope, shared: openShared(msg.shared),
    });
    let phases: PhaseName[] = [];
    const create = (): Handler => {
      const h = instantiateHandler(instantiate, msg.modules, host, msg.name);
      const r = h.configure(msg.config);
      if (r.tag === 'invalid') throw new AmbitError('AMBIT_ERR_CONFIG_REJECTED', `filter ${msg.name} rejected its config: ${r.val}`);
      const p = r.val.phases;
      phases = (['connection', 'requestHeaders', 'responseHeaders'] as const).filter((k) => p[k]);
      return h;
    };
    const slot: Slot = { name: msg.name, create, handler: undefined, perRequest: msg.instances === 'per-request' };
    const first = create();
    if (!slot.perRequest) slot.handler = first;
    slots.set(msg.key, slot);
    post({ type: 'loaded', key: msg.key, phases, binding: bindingOf(msg.modules) });
  } catch (e) {
    const code = e instanceof AmbitError ? e.code : 'AMBIT_ERR_INSTANTIATE';
    post({ type: 'loaded', key: msg.key, error: { code, message: errorMessage(e) } });
  }
}

function callMember(chain: WorkerChain, index: number, input: PhaseInput): ActionOf<PhaseInput['phase']> {
  const slot = slots.get(chain.keys[index]!);
  if (!slot) throw new Error('filter not loaded in this worker');
  // Per-request: a fresh instance for this call only, configured like every other.
  const h = slot.perRequest ? slot.create() : (slot.handler ??= slot.create());
  reported = undefined;
  scope.budget = freshBudget();
  try {
    return checked(slot.name, (() => {
      switch (input.phase) {
        case 'connection': return h.onConnection(input.conn);
        case 'requestHeaders': return h.onRequestHeaders(input.ctx, input.request);
        case 'responseHeaders': return h.onResponseHeaders(input.ctx, input.request, input.response);
      }
    })());
  } catch (e) {
    // A trapped instance cannot be entered again: recycle it.
    slot.handler = undefined;
    if (reported !== undefined) throw new Error(`${reported} (${errorMessage(e)})`);
    throw e;
  }
}

/** What a call returned, if within the per-call result size (else AMBIT_ERR_CALL_LIMIT). */
function checked<T>(filter: string, action: T): T {
  checkResultSize(filter, action);
  return action;
}

function writeProgress(job: number, position: number, ops: HeaderOp[]): void {
  const bytes = encoder.encode(JSON.stringify(ops));
  Atomics.store(ctrl, CTRL.PROGRESS_JOB, job);
  Atomics.store(ctrl, CTRL.PROGRESS_POSITION, position);
  if (bytes.length > PROGRESS_BYTES) {
    Atomics.store(ctrl, CTRL.PROGRESS_LENGTH, -1);
    return;
  }
  progress.set(bytes, 0);
  Atomics.store(ctrl, CTRL.PROGRESS_LENGTH, bytes.length);
}

function run(msg: Extract<ToWorker, { type: 'run' }>): void {
  const chain = chains.get(msg.chain);
  if (!chain) throw new Error(`chain ${msg.chain} unknown to the worker`);
  // The watchdog may look before the first filter is entered: show it this job's first
  // filter and start, never the previous job's (a stale start would read as an overrun).
  const position = msg.startAt ?? 0;
  started[0] = sharedNow();
  Atomics.store(ctrl, CTRL.MEMBER, phaseOrder(chain.members, msg.input.phase)[position] ?? 0);
  Atomics.store(ctrl, CTRL.POSITION, position);
  Atomics.store(ctrl, CTRL.JOB, msg.job);
  scope.phase = msg.input.phase;
  scope.facts = msg.input.facts ?? {};
  scope.loadCells = msg.input.load;
  scope.directives = {};
  let outcome = runPhase(chain.members, msg.input, (i, input) => callMember(chain, i, input), {
    startAt: msg.startAt,
    priorOps: msg.priorOps,
    onEnter(position, member) {
      started[0] = sharedNow();
      Atomics.store(ctrl, CTRL.MEMBER, member);
      Atomics.store(ctrl, CTRL.POSITION, position);
    },
    // Progress is only read to resume after a stopped fail-open filter.
    onProgress: chain.failOpen ? (position, ops) => writeProgress(msg.job, position, ops) : undefined,
  });
  Atomics.store(ctrl, CTRL.JOB, 0);
  scope.phase = undefined;
  scope.loadCells = undefined;
  // A first retry decided: the request counts as retrying from now on (see PhaseInput).
  if (outcome.action === 'retry' && msg.input.phase === 'responseHeaders' && msg.input.ctx.attempt === 1 && msg.input.load) {
    Atomics.add(msg.input.load, 1, 1);
  }
  if (outcome.action === 'continue' && msg.input.phase === 'requestHeaders' && hasDirectives(scope.directives)) {
    outcome = { ...outcome, directives: scope.directives };
  }
  post({ type: 'result', job: msg.job, outcome, logs, counters });
  logs = [];
  counters = [];
  // Replace recycled instances now, off the request path.
  for (const slot of slots.values()) {
    if (!slot.handler && !slot.perRequest) setImmediate(() => { try { slot.handler ??= slot.create(); } catch { /* retried on the next call */ } });
  }
}

function hasDirectives(d: typeof scope.directives): boolean {
  return d.delayMs !== undefined || d.subset !== undefined || d.perTryTimeoutMs !== undefined;
}

let queue = Promise.resolve();
port.on('message', (msg: ToWorker) => {
  if (msg.type === 'load') {
    queue = queue.then(() => load(msg));
    return;
  }
  queue = queue.then(() => {
    switch (msg.type) {
      case 'run': run(msg); break;
      case 'chain':
        chains.set(msg.id, {
          members: msg.members.map((m) => ({ name: m.name, phases: new Set(m.phases), failurePolicy: m.failurePolicy })),
          keys: msg.members.map((m) => m.key),
          failOpen: msg.members.some((m) => m.failurePolicy === 'fail-open'),
        });
        break;
      case 'drop-chain': chains.delete(msg.id); break;
      case 'unload': slots.delete(msg.key); break;
    }
  });
});
