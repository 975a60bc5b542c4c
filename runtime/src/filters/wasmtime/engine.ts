/**
 * The wasmtime engine: filter components compiled by Cranelift and run by the native
 * addon `@ambit/native` (`runtime/native/`).
 *
 * - One crossing per phase: `run` hands a whole phase of a chain to one of the addon's
 *   threads, which calls the filters in order in native code and answers once.
 * - Deadlines by epoch interruption: a call past its deadline traps within one epoch
 *   tick (default 1 ms), on its own thread; nothing else is stopped or respawned.
 * - Memory caps by a resource limiter per store; table and instance limits too.
 * - Instances per binding: `pooled` (warm, reused, replaced after a trap) or
 *   `per-request` (a fresh copy-on-write instance from the pooling allocator for
 *   every call: no state survives between requests).
 * - Precompiled components cached on disk by sha256 + engine version; an entry that
 *   fails its checksum is compiled again, never trusted.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { AmbitError, checkComponentBinary, defaultCacheDir, errorMessage, type LogLevel, type PhaseName } from '../../deps.js';
import { closedOutcome } from '../chain.js';
import { ChainBase } from '../chain-base.js';
import {
  BINDING_DEFAULTS, baseChain, type ChainInfo, type FilterBinding, type FilterCall, type FilterChain, type FilterEngine,
  type FilterFailure, type FilterStats, type PhaseInput, type PhaseOutcome,
} from '../engine.js';
import { copyStats, recordCalls } from '../stats.js';
import { loadNative, type NativeEngineHandle } from './native.js';
import { LazySharedDir } from '../shared-dir.js';

export interface WasmtimeEngineOptions {
  /** Threads running filter calls. Default: the number of CPUs. */
  threads?: number;
  /**
   * Phases waiting for a thread before new ones are refused (answered fail-closed at once, like
   * the V8 engine's). Default 10000.
   */
  maxQueue?: number;
  /** Epoch tick: a call is stopped at most one tick after its deadline. Default 1 ms. */
  epochTickMs?: number;
  /** Component instances the pooling allocator holds slots for. Default 1000. */
  maxInstances?: number;
  /** Largest memory cap a binding may ask for, in 64 KiB pages. Default 16384 (1 GiB). */
  maxMemoryPages?: number;
  /** Warm instances kept per pooled filter. Default: `threads`. */
  maxIdlePerFilter?: number;
  /**
   * Bytes of each instance's memory kept resident when its pool slot is freed, reset in
   * place (only the pages it wrote) so the next per-request instance takes no page faults
   * on them. Default 1 MiB; 0 where the kernel cannot report written pages (before Linux 6.7).
   */
  keepResidentBytes?: number;
  /** Where precompiled components are cached; `false`: no disk cache. Default `$AMBIT_CACHE_DIR` or the OS temp folder. */
  cacheDir?: string | false;
  /** Receives filter log lines. Default: stderr as JSON. */
  onLog?: (filter: string, level: LogLevel, message: string) => void;
  onCounter?: (filter: string, name: string, delta: number) => void;
  /**
   * The node's shared directory, where the tables of the `shared` capability are (see
   * `shared-dir.ts`). Default: `$AMBIT_SHARED_DIR`, else one of the engine's own, made on first
   * use and removed at close.
   */
  sharedDir?: string;
}

/** What the addon answers for a phase (`runtime/native/src/wire.rs`): a phase outcome, or a fail-closed failure to turn into one. */
interface NativeOutcome {
  action: PhaseOutcome['action'] | 'closed';
  failure?: FilterFailure;
  calls: FilterCall[];
  failures: FilterFailure[];
  logs: Array<[string, LogLevel, string]>;
  counters: Array<[string, string, number]>;
}

/** What `probeInstances` measured: per instance, wall and thread-CPU µs; resident bytes each live instance adds. */
export interface InstanceProbe {
  instantiateUs: number[];
  instantiateCpuUs: number[];
  configureUs: number[];
  configureCpuUs: number[];
  rssPerInstanceBytes: number;
  /** The instance's own part of it (anonymous pages): not the image pages it only read, which all instances share. */
  privatePerInstanceBytes: number;
}

/** p50, p99 and mean of a benchmark's samples, in µs. */
export interface SampleSummary {
  p50: number;
  p99: number;
  mean: number;
}

/** What `benchPhase` measured on the calling thread: the phase alone (wall and thread CPU time), writing its outcome as JSON, and the last outcome. */
export interface PhaseBench {
  iterations: number;
  phaseUs: SampleSummary;
  phaseCpuUs: SampleSummary;
  serializeUs: SampleSummary;
  outcome: Record<string, unknown>;
}

type NativeAnswer = { error: { code: string; message: string } } | { ok: { phases: PhaseName[]; sha256: string; cache: string } };

interface Loaded {
  handle: number;
  refs: number;
  phases: PhaseName[];
  cache: string;
}

class WasmtimeChain extends ChainBase {
  constructor(
    private readonly engine: WasmtimeEngine,
    readonly id: number,
    filters: ChainInfo['filters'],
    readonly keys: string[],
  ) {
    super(filters);
  }

  protected dispatch(input: PhaseInput): Promise<PhaseOutcome> {
    return this.engine.runPhase(this, input);
  }

  protected release(): void {
    this.engine.dropChain(this);
  }
}

export class WasmtimeEngine implements FilterEngine {
  readonly kind = 'wasmtime';
  private readonly native: NativeEngineHandle;
  private readonly pending = new Map<number, (answer: string) => void>();
  private readonly loaded = new Map<string, Promise<Loaded>>();
  private readonly totals = new Map<string, FilterStats>();
  /** Keeps the process alive while the addon has work (its callback does not). */
  private readonly keepAlive: NodeJS.Timeout;
  /** Where the node's shared tables are (capability `shared`). */
  private readonly sharedDir: LazySharedDir;
  /** Resolves `close()` once the last pending job has answered. */
  private drained: (() => void) | undefined;
  private nextJob = 1;
  private nextHandle = 1;
  private nextChain = 1;
  private closed = false;
  /** Phases handed to the addon and not answered yet (queued or running). */
  private inFlight = 0;
  private readonly maxInFlight: number;

  constructor(private readonly options: WasmtimeEngineOptions = {}) {
    const load = loadNative();
    if (!load.ok) throw new AmbitError('AMBIT_ERR_ENGINE_UNAVAILABLE', `the wasmtime engine is not available: ${load.reason}`);
    this.sharedDir = new LazySharedDir(options.sharedDir);
    this.maxInFlight = (options.maxQueue ?? 10_000) + (options.threads ?? os.availableParallelism());
    const cacheDir = options.cacheDir === false ? undefined : path.join(options.cacheDir ?? defaultCacheDir(), 'wasmtime');
    this.native = new load.native.NativeEngine(JSON.stringify({
      threads: options.threads,
      epochTickMs: options.epochTickMs,
      maxInstances: options.maxInstances,
      maxMemoryPages: options.maxMemoryPages,
      maxIdlePerFilter: options.maxIdlePerFilter,
      keepResidentBytes: options.keepResidentBytes,
      maxQueue: options.maxQueue,
      cacheDir,
    }), (job, answer) => this.onDone(job, answer));
    this.keepAlive = setInterval(() => {}, 1 << 30);
    this.keepAlive.unref();
  }

  private onDone(job: number, answer: string): void {
    const resolve = this.pending.get(job);
    if (!resolve) return;
    this.pending.delete(job);
    if (this.pending.size === 0) this.idle();
    resolve(answer);
  }

  private idle(): void {
    this.keepAlive.unref();
    this.drained?.();
  }

  /** Registers a job and returns its id and the promise of its answer. */
  private job(): [number, Promise<string>] {
    const id = this.nextJob++;
    if (this.nextJob > 0xffff_fff0) this.nextJob = 1;
    if (this.pending.size === 0) this.keepAlive.ref();
    return [id, new Promise((resolve) => this.pending.set(id, resolve))];
  }

  private cancel(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.idle();
  }

  async createChain(bindings: FilterBinding[]): Promise<FilterChain> {
    if (this.closed) throw new AmbitError('AMBIT_ERR_ENGINE_CLOSED', 'the filter engine is shut down');
    if (bindings.length === 0) throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE', 'a filter chain needs at least one filter');
    const keys: string[] = [];
    const members: Loaded[] = [];
    try {
      for (const b of bindings) {
        const key = bindingKey(b);
        const loaded = await this.load(key, b);
        loaded.refs++;
        keys.push(key);
        members.push(loaded);
      }
    } catch (e) {
      for (const k of keys) this.release(k);
      throw e;
    }
    const chain = new WasmtimeChain(
      this, this.nextChain++,
      bindings.map((b, i) => ({ name: b.name, sha256: b.sha256, phases: members[i]!.phases })),
      keys,
    );
    this.native.defineChain(chain.id, members.map((m) => m.handle));
    return chain;
  }

  private load(key: string, b: FilterBinding): Promise<Loaded> {
    let p = this.loaded.get(key);
    if (p) return p;
    p = (async () => {
      checkComponentBinary(b.wasm, `filter ${b.name}`);
      const deadlineMs = b.deadlineMs ?? BINDING_DEFAULTS.deadlineMs;
      if (!(deadlineMs > 0)) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `filter ${b.name}: deadlineMs must be > 0, got ${deadlineMs}`);
      const handle = this.nextHandle++;
      const [job, answer] = this.job();
      const spec = {
        name: b.name,
        capabilities: b.capabilities,
        config: JSON.stringify(b.config ?? {}),
        memoryMaxPages: b.memoryMaxPages ?? BINDING_DEFAULTS.memoryMaxPages,
        deadlineMs,
        failurePolicy: b.failurePolicy ?? BINDING_DEFAULTS.failurePolicy,
        instances: b.instances ?? BINDING_DEFAULTS.instances,
        sharedScope: b.sharedScope,
        sharedKeys: b.sharedKeys,
        sharedDir: b.capabilities.includes('shared') ? this.sharedDir.path : undefined,
      };
      try {
        this.native.loadFilter(job, handle, Buffer.from(b.wasm.buffer, b.wasm.byteOffset, b.wasm.byteLength), JSON.stringify(spec));
      } catch (e) {
        this.cancel(job);
        throw e;
      }
      const result = JSON.parse(await answer) as NativeAnswer;
      if ('error' in result) throw new AmbitError(result.error.code as 'AMBIT_ERR_INSTANTIATE', result.error.message);
      return { handle, refs: 0, phases: result.ok.phases, cache: result.ok.cache };
    })();
    this.loaded.set(key, p);
    p.catch(() => this.loaded.delete(key));
    return p;
  }

  async runPhase(chain: WasmtimeChain, input: PhaseInput): Promise<PhaseOutcome> {
    if (this.closed) {
      const failure: FilterFailure = { filter: chain.filters[0]!.name, kind: 'unavailable', message: 'the filter engine is shut down', policy: 'fail-closed' };
      return closedOutcome(input, failure, [], [failure]);
    }
    if (this.inFlight >= this.maxInFlight) {
      const failure: FilterFailure = { filter: chain.filters[0]!.name, kind: 'unavailable', message: `the filter queue is full (${this.maxInFlight} phases queued or running)`, policy: 'fail-closed' };
      return closedOutcome(input, failure, [], [failure]);
    }
    const [job, answer] = this.job();
    // The live load counters are shared memory, handed over as they are; the rest as JSON.
    const { load, ...rest } = input;
    try {
      this.native.run(job, chain.id, JSON.stringify(rest), load);
    } catch (e) {
      // The addon's own queue bound (a backstop to the one above): fail closed, like any refusal.
      this.cancel(job);
      const failure: FilterFailure = { filter: chain.filters[0]!.name, kind: 'unavailable', message: errorMessage(e), policy: 'fail-closed' };
      return closedOutcome(input, failure, [], [failure]);
    }
    this.inFlight++;
    const text = await answer.finally(() => { this.inFlight--; });
    const out = JSON.parse(text) as NativeOutcome | { error: { code: string; message: string } };
    if ('error' in out) {
      const failure: FilterFailure = { filter: chain.filters[0]!.name, kind: 'unavailable', message: out.error.message, policy: 'fail-closed' };
      return closedOutcome(input, failure, [], [failure]);
    }
    for (const [f, level, message] of out.logs) this.log(f, level, message);
    for (const [f, name, delta] of out.counters) this.options.onCounter?.(f, name, delta);
    recordCalls(this.totals, out.calls);
    if (out.action === 'closed') return closedOutcome(input, out.failure!, out.calls, out.failures);
    const { logs: _logs, counters: _counters, ...outcome } = out;
    return outcome as PhaseOutcome;
  }

  private log(filter: string, level: LogLevel, message: string): void {
    if (this.options.onLog) this.options.onLog(filter, level, message);
    else process.stderr.write(`${JSON.stringify({ level, filter, msg: message })}\n`);
  }

  /** The addon's engine object, for the native data path to find chains in (`NativeProxy.setState`). */
  nativeHandle(): NativeEngineHandle {
    return this.native;
  }

  dropChain(chain: WasmtimeChain): void {
    this.native.dropChain(chain.id);
    for (const k of chain.keys) this.release(k);
  }

  private release(key: string): void {
    const p = this.loaded.get(key);
    if (!p) return;
    void p.then((l) => {
      if (--l.refs > 0) return;
      if (this.loaded.get(key) !== p) return;
      this.loaded.delete(key);
      this.native.unloadFilter(l.handle);
    }, () => {});
  }

  /**
   * Benchmark hook: times `count` fresh instantiations and configures of `binding` on
   * the calling thread (blocking it), and the resident memory each live instance adds.
   */
  async probeInstances(binding: FilterBinding, count: number): Promise<InstanceProbe> {
    const loaded = await this.load(bindingKey(binding), binding);
    return JSON.parse(this.native.probeInstances(loaded.handle, count)) as InstanceProbe;
  }

  /**
   * Benchmark hook: runs one phase of `chain` `iterations` times on the calling thread
   * (blocking it), in native code without the crossing to the engine's threads. The input
   * is parsed once; each run gets a fresh copy of it.
   */
  benchPhase(chain: FilterChain, input: PhaseInput, iterations: number): PhaseBench {
    if (!(chain instanceof WasmtimeChain)) throw new AmbitError('AMBIT_ERR_ENGINE_UNAVAILABLE', 'benchPhase takes a chain of this wasmtime engine');
    const { load: _load, ...rest } = input;
    return JSON.parse(this.native.benchPhase(chain.id, JSON.stringify(rest), iterations)) as PhaseBench;
  }

  /** Engine facts for `/config_dump`: wasmtime version, threads, pool sizes, instances per filter. */
  info(): Record<string, unknown> {
    return JSON.parse(this.native.info()) as Record<string, unknown>;
  }

  stats(): Map<string, FilterStats> {
    return copyStats(this.totals);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.native.close();
    // Queued jobs finish on the addon's threads; wait for their answers.
    if (this.pending.size > 0) await new Promise<void>((r) => { this.drained = r; });
    clearInterval(this.keepAlive);
    this.sharedDir.release();
  }
}

function bindingKey(b: FilterBinding): string {
  return createHash('sha256').update(JSON.stringify([
    b.sha256, b.name, b.capabilities, b.config ?? {}, b.memoryMaxPages ?? BINDING_DEFAULTS.memoryMaxPages,
    b.deadlineMs ?? BINDING_DEFAULTS.deadlineMs, b.failurePolicy ?? BINDING_DEFAULTS.failurePolicy, b.instances ?? BINDING_DEFAULTS.instances,
    b.sharedScope ?? b.name, b.sharedKeys ?? null,
  ])).digest('hex');
}

/** The addon's id of a chain made by the wasmtime engine; undefined for other engines' chains. */
export function nativeChainId(chain: FilterChain): number | undefined {
  const base = baseChain(chain);
  return base instanceof WasmtimeChain ? base.id : undefined;
}
