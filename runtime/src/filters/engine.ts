/**
 * The seam between the proxy and a WebAssembly engine. Two engines implement it:
 * V8 (`./v8/`, components transpiled by jco, run on Node's own WebAssembly) and
 * wasmtime (`./wasmtime/`, the native addon `@ambit/native`). Both pass
 * `test/conformance.ts`.
 */
import type {
  AttemptFacts, Capability, Connection, Context, HeaderOp, LocalResponse, PhaseName, RequestDirectives, RequestHead, ResponseHead, RetryRequest,
} from '@ambit/filter-sdk/host';

export type FailurePolicy = 'fail-closed' | 'fail-open';

/**
 * How a binding's instances are used. `pooled`: warm instances are reused (and
 * replaced after a trap). `per-request`: every filter call gets a fresh instance, so no
 * state survives from one request to the next; cheap on wasmtime (copy-on-write from
 * the pooling allocator), costly on V8 (a full instantiation per call).
 */
export type InstanceStrategy = 'pooled' | 'per-request';

/** Defaults a binding gets when its config says nothing. */
export const BINDING_DEFAULTS = {
  /** A filter call that runs longer is stopped and counts as a failure. */
  deadlineMs: 50,
  /** 1024 pages × 64 KiB = 64 MiB of linear memory per instance. */
  memoryMaxPages: 1024,
  /** Like Envoy's wasm `fail_open: false`: a broken filter stops traffic rather than waving it through. */
  failurePolicy: 'fail-closed' as FailurePolicy,
  instances: 'pooled' as InstanceStrategy,
} as const;

/** One filter in a chain, as bound to a destination. */
export interface FilterBinding {
  /** Name for logs, metrics and error responses. */
  name: string;
  /** The component (bytes of a filter of the ambit:filter world). */
  wasm: Uint8Array;
  sha256: string;
  capabilities: Capability[];
  /** Configuration, already validated against the filter's schema. */
  config: unknown;
  failurePolicy?: FailurePolicy;
  deadlineMs?: number;
  memoryMaxPages?: number;
  instances?: InstanceStrategy;
  /**
   * Which shared table (capability `shared`) the filter uses: bindings with the same
   * scope share one. Default: `name`. The mesh config sets `<binding name>/<filter name>`.
   */
  sharedScope?: string;
  /** Send a failure's message (an exception's text) to the client in the 503 too. Default false: only the log has it. */
  exposeErrors?: boolean;
  /** How many keys that shared table holds (the binding's `maxKeys`). Default 4096. */
  sharedKeys?: number;
}

/**
 * One phase to run. `facts` are what the host knows about the attempt (why there is no
 * upstream response), answered to `upstream-error`. `load` is the destination's live
 * load counter (shared memory: `[0]` requests in flight, `[1]` of those retrying),
 * answered to `upstream-load`; an engine adds 1 to `load[1]` when a response phase of
 * a first attempt (`ctx.attempt === 1`) returns `retry`, before any other phase can
 * read it, so a burst of retry decisions sees each other (the proxy subtracts it when
 * the request ends).
 */
export type PhaseInput =
  | { phase: 'connection'; conn: Connection; facts?: AttemptFacts; load?: Int32Array }
  | { phase: 'requestHeaders'; ctx: Context; request: RequestHead; facts?: AttemptFacts; load?: Int32Array }
  | { phase: 'responseHeaders'; ctx: Context; request: RequestHead; response: ResponseHead; facts?: AttemptFacts; load?: Int32Array };

/** Why a filter call did not return an action. */
export type FailureKind = 'trap' | 'deadline' | 'unavailable';

export interface FilterFailure {
  filter: string;
  kind: FailureKind;
  message: string;
  /** What the failure policy made of it. */
  policy: FailurePolicy;
}

/** Per-filter account of one phase run. */
export interface FilterCall {
  filter: string;
  durationMs: number;
  outcome: 'ok' | FailureKind;
}

/**
 * The combined result of a phase over the whole chain. `ops` are the header changes of
 * every filter that ran, in order; the caller applies them once.
 */
export type PhaseResult =
  /** `directives`: what request-phase filters asked of the host (delay, subset, per-try timeout), when any did. */
  | { action: 'continue'; ops: HeaderOp[]; directives?: RequestDirectives }
  | { action: 'respond'; response: LocalResponse; filter: string }
  | { action: 'deny'; reason: string; filter: string }
  | { action: 'retry'; retry: RetryRequest; filter: string };

export type PhaseOutcome = PhaseResult & {
  calls: FilterCall[];
  failures: FilterFailure[];
};

export interface ChainInfo {
  filters: ReadonlyArray<{ name: string; sha256: string; phases: PhaseName[] }>;
}

export interface FilterChain extends ChainInfo {
  /** Runs one phase over every filter of the chain that implements it. Never rejects for a filter's fault. */
  run(input: PhaseInput): Promise<PhaseOutcome>;
  /** Releases the chain's instances once its in-flight calls are done. */
  close(): Promise<void>;
}

export interface FilterStats {
  calls: number;
  traps: number;
  deadlines: number;
  totalMs: number;
}

export interface FilterEngine {
  readonly kind: string;
  /**
   * Shared storage (capability `shared`) is one table per binding name, shared by every
   * instance and thread of the engine and kept across chains (config reloads).
   */
  /** Loads, configures and warms every filter; rejects with a coded AmbitError on bad input. */
  createChain(bindings: FilterBinding[]): Promise<FilterChain>;
  /** Totals per filter name since start. */
  stats(): Map<string, FilterStats>;
  /** Facts about the engine for `/config_dump` (version, threads, limits). */
  info(): Record<string, unknown>;
  close(): Promise<void>;
}

/** Where a chain that wraps another (`reportFailures`) keeps the engine's own chain. */
export const BASE_CHAIN = Symbol('ambit.baseChain');

/** The engine's own chain under any wrappers (the native data path needs the engine's chain id). */
export function baseChain(chain: FilterChain): FilterChain {
  let c = chain;
  for (let next = (c as { [BASE_CHAIN]?: FilterChain })[BASE_CHAIN]; next; next = (c as { [BASE_CHAIN]?: FilterChain })[BASE_CHAIN]) c = next;
  return c;
}
