/** Messages between the V8 engine (main thread) and its worker threads. */
import type { Capability, CoreModules, FailurePolicy, HeaderOp, LogLevel, PhaseName, V8Binding } from '../../deps.js';
import type { InstanceStrategy, PhaseInput, PhaseOutcome } from '../engine.js';

export interface LoadFilter {
  type: 'load';
  key: string;
  name: string;
  gluePath: string;
  modules: CoreModules;
  config: string;
  capabilities: Capability[];
  /** `per-request`: a fresh instance for every call. */
  instances: InstanceStrategy;
  /**
   * The binding's shared table (capability `shared`): the node-wide table of `scope` in `dir`
   * (`path`, a mapped file every proxy process of the node shares), or, without the shared-table addon,
   * an in-process table in a SharedArrayBuffer.
   */
  shared?: { dir: string; scope: string; path: string; maxKeys: number } | { buffer: SharedArrayBuffer };
}

export interface DefineChain {
  type: 'chain';
  id: number;
  members: Array<{ key: string; name: string; phases: PhaseName[]; failurePolicy: FailurePolicy }>;
}

export interface RunPhase {
  type: 'run';
  job: number;
  chain: number;
  input: PhaseInput;
  startAt?: number;
  priorOps?: HeaderOp[];
}

export type ToWorker = LoadFilter | DefineChain | RunPhase | { type: 'unload'; key: string } | { type: 'drop-chain'; id: number };

export type FromWorker =
  /** `binding`: how the worker bound the component (the world's own binding, or jco's glue). */
  | { type: 'loaded'; key: string; phases?: PhaseName[]; binding?: V8Binding; error?: { code: string; message: string } }
  | { type: 'result'; job: number; outcome: PhaseOutcome; logs: LogLine[]; counters: CounterAdd[] };

export type LogLine = [filter: string, level: LogLevel, message: string];
export type CounterAdd = [filter: string, name: string, delta: number];

/**
 * Shared control block, written by the worker and read by the main thread's
 * watchdog without a message round trip.
 */
export const CTRL = {
  /** Job id now running (0: idle). */
  JOB: 0,
  /** Chain member index now running. */
  MEMBER: 1,
  /** Position in the phase order now running. */
  POSITION: 2,
  /** Job id the progress area belongs to. */
  PROGRESS_JOB: 3,
  /** Last phase-order position whose changes are in the progress area. */
  PROGRESS_POSITION: 4,
  /** Byte length of the JSON in the progress area (-1: did not fit). */
  PROGRESS_LENGTH: 5,
  SIZE: 6,
} as const;

/** Bytes for the JSON of header changes made so far in the running phase. */
export const PROGRESS_BYTES = 256 * 1024;

export interface SharedControl {
  ctrl: SharedArrayBuffer;
  /** Float64 start time (ms since timeOrigin-independent epoch) of the running call. */
  started: SharedArrayBuffer;
  progress: SharedArrayBuffer;
}

/** Milliseconds on a clock both threads agree on. */
export function sharedNow(): number {
  return performance.timeOrigin + performance.now();
}
