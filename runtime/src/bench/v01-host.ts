/**
 * A minimal host for `ambit:filter@0.1.0` (the world of `git show 8aa88f4:sdk/wit/filter.wit`),
 * as the 0.1 SDK gave jco's glue: every host function of the world, plain values in and
 * out (records as objects, enums as strings, options as `undefined`). Log lines and
 * counters are dropped; the shared table is an in-process one; traffic directives are
 * accepted and dropped. Enough to call a 0.1 filter's phases; the measured path of the
 * hello filter calls none of them.
 */
import { SharedTable, type HostImports } from './deps.js';

/** The 0.1 `host` interface has the same functions and value shapes as 0.2's (`HostImports`). */
export function hostV01(): HostImports {
  const shared = SharedTable.create();
  return {
    log: () => {},
    counterAdd: () => {},
    now: () => Date.now(),
    monotonic: () => performance.now(),
    random: () => Math.random(),
    sharedGet: (key) => shared.get(key),
    sharedSet: (key, value, version) => shared.set(key, value, version),
    sharedAdd: (key, delta) => shared.add(key, delta),
    delayRequest: () => {},
    routeToSubset: () => {},
    setPerTryTimeout: () => {},
    upstreamError: () => undefined,
    upstreamLoad: () => ({ activeRequests: 1, activeRetries: 0 }),
    reportError: () => {},
  };
}
