import { AmbitError } from './errors.js';
import type { Capability, HostImports, LogLevel } from '../abi/types.js';

/** Where a filter's host calls go. */
export interface HostSink {
  log(filter: string, level: LogLevel, message: string): void;
  counter(filter: string, name: string, delta: number): void;
  /** The message of the exception that is about to trap the current call. */
  reportError?(filter: string, message: string): void;
}

/** Longest log line a filter may write; longer ones are cut. */
export const MAX_LOG_LINE = 4096;

/**
 * Builds the `host` imports for one filter. Calls to capabilities the filter did not
 * declare throw, which traps the call: a filter cannot quietly use what its package
 * does not admit to.
 */
export function createHostImports(filter: string, capabilities: readonly Capability[], sink: HostSink): HostImports {
  const has = new Set(capabilities);
  const refuse = (cap: Capability) => () => {
    throw new AmbitError('AMBIT_ERR_CAPABILITY', `filter ${filter} used the "${cap}" capability without declaring it in its package`);
  };
  return {
    log: has.has('log')
      ? (level, message) => sink.log(filter, level, message.length > MAX_LOG_LINE ? `${message.slice(0, MAX_LOG_LINE)}…` : message)
      : refuse('log'),
    counterAdd: has.has('counters') ? (name, delta) => sink.counter(filter, name, delta) : refuse('counters'),
    now: has.has('clock') ? () => Date.now() : refuse('clock'),
    monotonic: has.has('clock') ? () => performance.now() : refuse('clock'),
    reportError: (message) => sink.reportError?.(filter, message.length > MAX_LOG_LINE ? `${message.slice(0, MAX_LOG_LINE)}…` : message),
  };
}
