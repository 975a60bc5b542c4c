/**
 * The V8 engine: filter components transpiled by jco and run on Node's own
 * WebAssembly, in worker threads.
 *
 * - Compile once: core modules are compiled (with the memory cap patched in) on the
 *   main thread and shared with every worker.
 * - Warm instances: every worker keeps one configured instance per filter; a trapped
 *   instance is replaced.
 * - One crossing per phase: a job carries a whole phase of a chain to one worker.
 * - Deadlines: a watchdog reads the worker's shared control block and terminates a
 *   worker whose current filter call overruns its binding's deadline. The worker held
 *   only that call; it is respawned from the compiled modules.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import {
  AmbitError, compileCore, errorMessage, prepareComponent, SharedTable, DEFAULT_SHARED_ENTRIES, type CoreModules, type HeaderOp, type LogLevel, type PhaseName, type V8Binding,
} from '../../deps.js';
import { closedOutcome } from '../chain.js';
import { ChainBase } from '../chain-base.js';
import { copyStats, recordCalls } from '../stats.js';
import {
  BINDING_DEFAULTS, type ChainInfo, type FailurePolicy, type FilterBinding, type FilterCall, type FilterChain,
  type FilterEngine, type FilterFailure, type FilterStats, type PhaseInput, type PhaseOutcome,
} from '../engine.js';
import { CTRL, PROGRESS_BYTES, sharedNow, type FromWorker, type LoadFilter, type DefineChain, type ToWorker } from './protocol.js';
import { LazySharedDir } from '../shared-dir.js';
import * as sharedAddon from '@ambit/addon/shared';

export interface V8EngineOptions {
  /** Worker threads running filters. Default: 2 (one can be stopped while the other serves). */
  workers?: number;
  /** Phases waiting for a worker before new ones are refused (answered per failure policy). Default 10000. */
  maxQueue?: number;
  /** Where transpiled components are cached. Default `$AMBIT_CACHE_DIR` or the OS temp folder. */
  cacheDir?: string;
  /** Receives filter log lines. Default: stderr as JSON. */
  onLog?: (filter: string, level: LogLevel, message: string) => void;
  onCounter?: (filter: string, name: string, delta: number) => void;
  /**
   * The node's shared directory, where the tables of the `shared` capability are (see
   * `shared-dir.ts`). Default: `$AMBIT_SHARED_DIR`, else one of the engine's own, made on first
   * use and removed at close.
   */
  sharedDir?: string;
  /** Where a one-line notice goes (shared storage falling back to per process). */
  say?: (line: string) => void;
}

interface Job {
  id: number;
  chain: V8Chain;
  input: PhaseInput;
  startAt?: number;
  priorOps?: HeaderOp[];
  /** Calls and failures from earlier, stopped attempts of this same job. */
  calls: FilterCall[];
  failures: FilterFailure[];
  resolve: (o: PhaseOutcome) => void;
}

interface Slot {
  worker: Worker;
  ctrl: Int32Array;
  started: Float64Array;
  progress: Uint8Array;
  shared: { ctrl: SharedArrayBuffer; started: SharedArrayBuffer; progress: SharedArrayBuffer };
  ready: boolean;
  job: Job | undefined;
  timer: NodeJS.Timeout | undefined;
  pendingLoads: Map<string, (m: Extract<FromWorker, { type: 'loaded' }>) => void>;
  stopped: boolean;
}

interface LoadedFilter {
  msg: LoadFilter;
  refs: number;
  phases: PhaseName[];
  binding: V8Binding | undefined;
}

interface Member {
  key: string;
  name: string;
  sha256: string;
  phases: PhaseName[];
  failurePolicy: FailurePolicy;
  deadlineMs: number;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

class V8Chain extends ChainBase {
  /** The shortest deadline in the chain: when the watchdog first looks. */
  readonly minDeadlineMs: number;

  constructor(readonly engine: V8Engine, readonly id: number, readonly members: Member[]) {
    super(members.map((m) => ({ name: m.name, sha256: m.sha256, phases: m.phases })));
    this.minDeadlineMs = Math.min(...members.map((m) => m.deadlineMs));
  }

  protected dispatch(input: PhaseInput): Promise<PhaseOutcome> {
    return this.engine.submit(this, input);
  }

  protected release(): void {
    this.engine.dropChain(this);
  }
}

export class V8Engine implements FilterEngine {
  readonly kind = 'v8';
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly filters = new Map<string, LoadedFilter>();
  private readonly chains = new Map<number, V8Chain>();
  private readonly compiled = new Map<string, Promise<{ gluePath: string; modules: CoreModules }>>();
  private readonly totals = new Map<string, FilterStats>();
  /** Where the node's shared tables are (capability `shared`). */
  private readonly sharedDir: LazySharedDir;
  /** Shared tables by scope (`<binding>/<filter>`): every worker and every chain (reload) of a binding uses the same one. */
  private readonly sharedTables = new Map<string, NonNullable<LoadFilter['shared']>>();
  private nextJob = 1;
  private nextChain = 1;
  private closed = false;
  private readonly maxQueue: number;

  constructor(private readonly options: V8EngineOptions = {}) {
    this.maxQueue = options.maxQueue ?? 10_000;
    this.sharedDir = new LazySharedDir(options.sharedDir);
    const n = Math.max(1, options.workers ?? 2);
    for (let i = 0; i < n; i++) this.slots.push(this.spawn());
  }

  private spawn(): Slot {
    const shared = {
      ctrl: new SharedArrayBuffer(CTRL.SIZE * 4),
      started: new SharedArrayBuffer(8),
      progress: new SharedArrayBuffer(PROGRESS_BYTES),
    };
    const worker = new Worker(WORKER_URL, { workerData: shared });
    const slot: Slot = {
      worker, shared,
      ctrl: new Int32Array(shared.ctrl), started: new Float64Array(shared.started), progress: new Uint8Array(shared.progress),
      ready: false, job: undefined, timer: undefined, pendingLoads: new Map(), stopped: false,
    };
    worker.on('message', (m: FromWorker) => this.onMessage(slot, m));
    worker.on('error', (e) => this.onWorkerDeath(slot, `worker error: ${e.message}`));
    worker.on('exit', (code) => this.onWorkerDeath(slot, `worker exited with code ${code}`));
    // Replay what the engine holds, so a respawned worker serves every chain.
    const loads = [...this.filters.values()].map((f) => this.loadInto(slot, f.msg));
    for (const c of this.chains.values()) this.send(slot, defineChain(c));
    void Promise.all(loads).then(() => {
      slot.ready = true;
      this.pump();
    });
    return slot;
  }

  private send(slot: Slot, msg: ToWorker): void {
    slot.worker.postMessage(msg);
  }

  private loadInto(slot: Slot, msg: LoadFilter): Promise<Extract<FromWorker, { type: 'loaded' }>> {
    return new Promise((resolve) => {
      slot.pendingLoads.set(msg.key, resolve);
      this.send(slot, msg);
    });
  }

  private onMessage(slot: Slot, m: FromWorker): void {
    if (m.type === 'loaded') {
      const r = slot.pendingLoads.get(m.key);
      slot.pendingLoads.delete(m.key);
      r?.(m);
      return;
    }
    const job = slot.job;
    if (!job || job.id !== m.job) return;
    this.finishSlot(slot);
    for (const [f, level, message] of m.logs) this.log(f, level, message);
    for (const [f, name, delta] of m.counters) this.options.onCounter?.(f, name, delta);
    this.complete(job, m.outcome);
    this.pump();
  }

  private log(filter: string, level: LogLevel, message: string): void {
    if (this.options.onLog) this.options.onLog(filter, level, message);
    else process.stderr.write(`${JSON.stringify({ level, filter, msg: message })}\n`);
  }

  private complete(job: Job, outcome: PhaseOutcome): void {
    const calls = job.calls.length ? [...job.calls, ...outcome.calls] : outcome.calls;
    const failures = job.failures.length ? [...job.failures, ...outcome.failures] : outcome.failures;
    recordCalls(this.totals, calls);
    job.resolve({ ...outcome, calls, failures });
  }

  private finishSlot(slot: Slot): void {
    slot.job = undefined;
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = undefined;
  }

  submit(chain: V8Chain, input: PhaseInput): Promise<PhaseOutcome> {
    return new Promise((resolve) => {
      const job: Job = { id: this.nextJob++, chain, input, calls: [], failures: [], resolve };
      if (this.nextJob > 0x7fffffff) this.nextJob = 1;
      if (this.closed || this.queue.length >= this.maxQueue) {
        const m = chain.members[0]!;
        const reason = this.closed ? 'the filter engine is shut down' : `the filter queue is full (${this.maxQueue} phases waiting)`;
        const failure: FilterFailure = { filter: m.name, kind: 'unavailable', message: reason, policy: 'fail-closed' };
        resolve(closedOutcome(input, failure, [], [failure]));
        return;
      }
      this.queue.push(job);
      this.pump();
    });
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (!slot.ready || slot.job || slot.stopped) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      this.send(slot, { type: 'run', job: job.id, chain: job.chain.id, input: job.input, startAt: job.startAt, priorOps: job.priorOps });
      this.arm(slot, job, job.chain.minDeadlineMs);
    }
  }

  private arm(slot: Slot, job: Job, inMs: number): void {
    slot.timer = setTimeout(() => this.watch(slot, job), Math.max(1, Math.ceil(inMs)));
  }

  /** Stops the worker if the filter it is running has overrun its deadline. */
  private watch(slot: Slot, job: Job): void {
    if (slot.job !== job) return;
    if (Atomics.load(slot.ctrl, CTRL.JOB) !== job.id) return this.arm(slot, job, job.chain.minDeadlineMs);
    const member = job.chain.members[Atomics.load(slot.ctrl, CTRL.MEMBER)]!;
    const elapsed = sharedNow() - slot.started[0]!;
    if (elapsed < member.deadlineMs) return this.arm(slot, job, member.deadlineMs - elapsed);
    this.stopJob(slot, job, 'deadline', `did not return within its ${member.deadlineMs} ms deadline and was stopped`);
  }

  private onWorkerDeath(slot: Slot, why: string): void {
    if (slot.stopped || this.closed) return;
    const job = slot.job;
    if (job) this.stopJob(slot, job, 'trap', why);
    else this.replace(slot);
  }

  /** The running call of `job` failed without an answer: settle it by policy and replace the worker. */
  private stopJob(slot: Slot, job: Job, kind: 'deadline' | 'trap', message: string): void {
    const member = job.chain.members[Atomics.load(slot.ctrl, CTRL.MEMBER)]!;
    const position = Atomics.load(slot.ctrl, CTRL.POSITION);
    let priorOps: HeaderOp[] | undefined = job.priorOps;
    let lost = false;
    if (Atomics.load(slot.ctrl, CTRL.PROGRESS_JOB) === job.id && Atomics.load(slot.ctrl, CTRL.PROGRESS_POSITION) < position) {
      const len = Atomics.load(slot.ctrl, CTRL.PROGRESS_LENGTH);
      if (len < 0) lost = true;
      else priorOps = JSON.parse(new TextDecoder().decode(slot.progress.slice(0, len))) as HeaderOp[];
    }
    this.finishSlot(slot);
    this.replace(slot);
    const elapsed = sharedNow() - slot.started[0]!;
    job.calls.push({ filter: member.name, durationMs: elapsed, outcome: kind });
    const failure: FilterFailure = { filter: member.name, kind, message, policy: member.failurePolicy };
    job.failures.push(failure);
    if (member.failurePolicy === 'fail-closed' || lost) {
      this.complete(job, closedOutcome(job.input, failure, [], []));
    } else {
      // Fail open: resume the phase after the stopped filter, with the changes made before it.
      job.startAt = position + 1;
      job.priorOps = priorOps;
      this.queue.unshift(job);
    }
    this.pump();
  }

  private replace(slot: Slot): void {
    slot.stopped = true;
    // A worker stopped mid-call may hold a lock of an in-process shared table: release it once
    // it is gone. (The node-wide tables lock in C, which a terminated thread always leaves.)
    const thread = slot.worker.threadId;
    void slot.worker.terminate().then(() => {
      for (const t of this.sharedTables.values()) if ('buffer' in t) new SharedTable(t.buffer).releaseLocksOf(thread);
    });
    const i = this.slots.indexOf(slot);
    if (i >= 0 && !this.closed) this.slots[i] = this.spawn();
  }

  private async compile(binding: FilterBinding, memoryMaxPages: number): Promise<{ gluePath: string; modules: CoreModules }> {
    const key = `${binding.sha256}:${memoryMaxPages}`;
    let p = this.compiled.get(key);
    if (!p) {
      p = (async () => {
        const prepared = await prepareComponent(binding.wasm, { label: `filter ${binding.name}`, cacheDir: this.options.cacheDir });
        return { gluePath: prepared.gluePath, modules: await compileCore(prepared, memoryMaxPages, binding.name) };
      })();
      this.compiled.set(key, p);
      p.catch(() => this.compiled.delete(key));
    }
    return p;
  }

  async createChain(bindings: FilterBinding[]): Promise<FilterChain> {
    if (this.closed) throw new AmbitError('AMBIT_ERR_ENGINE_CLOSED', 'the filter engine is shut down');
    if (bindings.length === 0) throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE', 'a filter chain needs at least one filter');
    const members: Member[] = [];
    const acquired: LoadedFilter[] = [];
    try {
      for (const b of bindings) {
        const memoryMaxPages = b.memoryMaxPages ?? BINDING_DEFAULTS.memoryMaxPages;
        const deadlineMs = b.deadlineMs ?? BINDING_DEFAULTS.deadlineMs;
        if (!(deadlineMs > 0)) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `filter ${b.name}: deadlineMs must be > 0, got ${deadlineMs}`);
        const config = JSON.stringify(b.config ?? {});
        const instances = b.instances ?? BINDING_DEFAULTS.instances;
        const key = createHash('sha256').update(`${b.sha256}\0${memoryMaxPages}\0${b.capabilities.join(',')}\0${b.name}\0${b.sharedScope ?? ''}\0${b.sharedKeys ?? ''}\0${config}\0${instances}`).digest('hex');
        let loaded = this.filters.get(key);
        if (!loaded) {
          const { gluePath, modules } = await this.compile(b, memoryMaxPages);
          const msg: LoadFilter = {
            type: 'load', key, name: b.name, gluePath, modules, config, capabilities: b.capabilities, instances,
            shared: b.capabilities.includes('shared') ? this.sharedTable(b.sharedScope ?? b.name, b.sharedKeys) : undefined,
          };
          const results = await Promise.all(this.slots.map((s) => this.loadInto(s, msg)));
          const bad = results.find((r) => r.error);
          if (bad?.error) {
            for (const s of this.slots) this.send(s, { type: 'unload', key });
            throw new AmbitError(bad.error.code as 'AMBIT_ERR_INSTANTIATE', bad.error.message);
          }
          loaded = this.filters.get(key) ?? { msg, refs: 0, phases: results[0]!.phases ?? [], binding: results[0]!.binding };
          this.filters.set(key, loaded);
        }
        loaded.refs++;
        acquired.push(loaded);
        members.push({
          key, name: b.name, sha256: b.sha256, phases: loaded.phases,
          failurePolicy: b.failurePolicy ?? BINDING_DEFAULTS.failurePolicy, deadlineMs,
        });
      }
    } catch (e) {
      for (const f of acquired) this.release(f.msg.key);
      throw e;
    }
    const chain = new V8Chain(this, this.nextChain++, members);
    this.chains.set(chain.id, chain);
    for (const s of this.slots) this.send(s, defineChain(chain));
    return chain;
  }

  /**
   * The shared table of a scope (capability `shared`), opened here first so that a file that
   * cannot be used fails the load with its reason. Without the shared-table addon, an
   * in-process table, said once: each worker process then has its own.
   */
  private sharedTable(scope: string, maxKeys = DEFAULT_SHARED_ENTRIES): NonNullable<LoadFilter['shared']> {
    let t = this.sharedTables.get(scope);
    if (t) return t;
    if (sharedAddon.available) {
      const dir = this.sharedDir.path;
      try {
        t = { dir, scope, maxKeys, path: sharedAddon.openSharedTable(dir, scope, maxKeys).path };
      } catch (e) {
        // The addon's error names the file and what to do.
        throw new AmbitError('AMBIT_ERR_SHARED_TABLE', `shared storage of ${scope}: ${errorMessage(e)}`);
      }
    } else {
      if (this.sharedTables.size === 0) {
        this.options.say?.(`shared storage is per process: ${sharedAddon.unavailableReason}; with several proxy workers each keeps its own rate limits`);
      }
      t = { buffer: SharedTable.create(maxKeys).buffer };
    }
    this.sharedTables.set(scope, t);
    return t;
  }

  dropChain(chain: V8Chain): void {
    this.chains.delete(chain.id);
    for (const s of this.slots) this.send(s, { type: 'drop-chain', id: chain.id });
    for (const m of chain.members) this.release(m.key);
  }

  private release(key: string): void {
    const f = this.filters.get(key);
    if (!f || --f.refs > 0) return;
    this.filters.delete(key);
    for (const s of this.slots) this.send(s, { type: 'unload', key });
  }

  info(): Record<string, unknown> {
    return {
      node: process.versions.node, v8: process.versions.v8, workers: this.slots.length, queued: this.queue.length, filters: this.filters.size,
      // How each filter's component is bound: `direct` (the world's own binding) or `jco` (jco's glue).
      bindings: Object.fromEntries([...this.filters.values()].map((f) => [f.msg.name, f.binding])),
      sharedTables: Object.fromEntries([...this.sharedTables].map(([scope, t]) => [scope, 'path' in t ? t.path : 'in this process only'])),
    };
  }

  stats(): Map<string, FilterStats> {
    return copyStats(this.totals);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) {
      const failure: FilterFailure = { filter: job.chain.members[0]!.name, kind: 'unavailable', message: 'the filter engine is shut down', policy: 'fail-closed' };
      job.resolve(closedOutcome(job.input, failure, job.calls, [...job.failures, failure]));
    }
    await Promise.all(this.slots.map((s) => { s.stopped = true; if (s.timer) clearTimeout(s.timer); return s.worker.terminate(); }));
    this.sharedDir.release();
  }
}

function defineChain(c: V8Chain): DefineChain {
  return {
    type: 'chain', id: c.id,
    members: c.members.map((m) => ({ key: m.key, name: m.name, phases: m.phases, failurePolicy: m.failurePolicy })),
  };
}
