import { AmbitError } from './errors.js';
import type { SharedStore } from './shared.js';
import { freshBudget, spend, type CallBudget } from './call-limits.js';
import type { AttemptFacts, Capability, HostImports, LogLevel, PhaseName, RequestDirectives, ServiceLoad } from '../abi/types.js';

/** Where a filter's host calls go. */
export interface HostSink {
  log(filter: string, level: LogLevel, message: string): void;
  counter(filter: string, name: string, delta: number): void;
  /** The message of the exception that is about to trap the current call. */
  reportError?(filter: string, message: string): void;
}

/**
 * The call in progress, which the host functions about a request read and write. The
 * caller (an engine worker, the test harness) sets `phase` and `facts` before each
 * filter call and reads `directives` after the phase.
 */
export interface CallScope {
  phase: PhaseName | undefined;
  /** What request-phase filters asked for (delay, subset, per-try timeout). */
  directives: RequestDirectives;
  /** What the host knows about the current attempt. */
  facts: AttemptFacts;
  /** Live load counters (`[0]` in flight, `[1]` retrying), read instead of `facts.load` when set. */
  loadCells?: Int32Array;
  /** What the current filter call has spent of its per-call caps: set to `freshBudget()` before each call. */
  budget: CallBudget;
}

export function newCallScope(): CallScope {
  return { phase: undefined, directives: {}, facts: {}, budget: freshBudget() };
}

export interface HostExtras {
  /** The binding's shared table (capability `shared`). */
  shared?: SharedStore;
  /** The call in progress. Without one, request-phase host calls trap. */
  scope?: CallScope;
  /** Replaces the generator behind `random` (tests make percentages deterministic with it). */
  random?: () => number;
}

/** Longest log line a filter may write; longer ones are cut. */
export const MAX_LOG_LINE = 4096;
/** Most a chain may hold a request with `delay-request`. */
export const MAX_REQUEST_DELAY_MS = 60_000;

const NO_LOAD: ServiceLoad = { activeRequests: 0, activeRetries: 0 };

/**
 * Builds the `host` imports for one filter. Calls to capabilities the filter did not
 * declare throw, which traps the call: a filter cannot quietly use what its package
 * does not admit to.
 */
export function createHostImports(filter: string, capabilities: readonly Capability[], sink: HostSink, extras: HostExtras = {}): HostImports {
  const has = new Set(capabilities);
  const refuse = (cap: Capability) => () => {
    throw new AmbitError('AMBIT_ERR_CAPABILITY', `filter ${filter} used the "${cap}" capability without declaring it in its package`);
  };
  const scope = extras.scope;
  /** A request-phase directive: refused in other phases, where it could not take effect. */
  const inRequest = (fn: string): RequestDirectives => {
    if (!scope || scope.phase !== 'requestHeaders') {
      throw new AmbitError('AMBIT_ERR_HOST_CALL', `filter ${filter} called ${fn} outside the request phase (${scope?.phase ?? 'no call'}); it only takes effect in onRequest`);
    }
    return scope.directives;
  };
  const shared = extras.shared;
  return {
    log: has.has('log')
      ? (level, message) => {
        if (scope) spend(scope.budget, 'logLines', filter);
        sink.log(filter, level, message.length > MAX_LOG_LINE ? `${message.slice(0, MAX_LOG_LINE)}…` : message);
      }
      : refuse('log'),
    counterAdd: has.has('counters')
      ? (name, delta) => {
        if (scope) spend(scope.budget, 'counterUpdates', filter);
        sink.counter(filter, name, delta);
      }
      : refuse('counters'),
    now: has.has('clock') ? () => Date.now() : refuse('clock'),
    monotonic: has.has('clock') ? () => performance.now() : refuse('clock'),
    // V8's generator (xorshift128+, seeded from the OS per thread): fast, and not for secrets.
    random: has.has('random') ? (extras.random ?? (() => Math.random())) : refuse('random'),
    sharedGet: has.has('shared') && shared ? (key) => shared.get(key) : refuse('shared'),
    sharedSet: has.has('shared') && shared ? (key, value, version) => shared.set(key, value, version) : refuse('shared'),
    sharedAdd: has.has('shared') && shared ? (key, delta) => shared.add(key, delta) : refuse('shared'),
    delayRequest: has.has('traffic')
      ? (ms) => {
        const d = inRequest('delay-request');
        d.delayMs = Math.min(MAX_REQUEST_DELAY_MS, (d.delayMs ?? 0) + (ms >>> 0));
      }
      : refuse('traffic'),
    routeToSubset: has.has('traffic')
      ? (subset) => { inRequest('route-to-subset').subset = String(subset); }
      : refuse('traffic'),
    setPerTryTimeout: has.has('traffic')
      ? (ms) => { inRequest('set-per-try-timeout').perTryTimeoutMs = ms >>> 0; }
      : refuse('traffic'),
    upstreamError: () => scope?.facts.upstreamError,
    upstreamLoad: () => {
      const cells = scope?.loadCells;
      if (cells) return { activeRequests: Math.max(0, Atomics.load(cells, 0)), activeRetries: Math.max(0, Atomics.load(cells, 1)) };
      return scope?.facts.load ?? NO_LOAD;
    },
    reportError: (message) => sink.reportError?.(filter, message.length > MAX_LOG_LINE ? `${message.slice(0, MAX_LOG_LINE)}…` : message),
  };
}
