import { natives as need } from './natives.js';

const LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 } as const;

/** Writes to the node proxy's log, tagged with the filter's name. Needs the `log` capability. */
export const log = {
  trace: (msg: string): void => need().log(LEVELS.trace, String(msg)),
  debug: (msg: string): void => need().log(LEVELS.debug, String(msg)),
  info: (msg: string): void => need().log(LEVELS.info, String(msg)),
  warn: (msg: string): void => need().log(LEVELS.warn, String(msg)),
  error: (msg: string): void => need().log(LEVELS.error, String(msg)),
};

/** Adds to a named counter (Prometheus `ambit_filter_counter_total`). Needs the `counters` capability. */
export function counter(name: string, delta = 1): void {
  need().counterAdd(name, delta >>> 0);
}

/** Clocks, in milliseconds. Needs the `clock` capability. */
export const clock = {
  /** Wall-clock time since the Unix epoch. */
  now: (): number => need().now(),
  /** Monotonic, fractional; for durations. */
  monotonic: (): number => need().monotonic(),
};

/** A number in [0, 1), uniformly distributed (not for secrets). Needs the `random` capability. */
export function random(): number {
  return need().random();
}

/** A value of the shared table and its version, for {@link shared.compareAndSet}. */
export interface SharedValue {
  value: string;
  version: number;
}

/**
 * A key-value table shared by every instance of this filter binding on the node proxy
 * (all its filter threads), kept across config reloads. Keys up to 128 bytes, values
 * up to 256. Needs the `shared` capability.
 */
export const shared = {
  /** The value at `key` and its version, or undefined. */
  get: (key: string): SharedValue | undefined => {
    const e = need().sharedGet(String(key));
    return e ? { value: e[0], version: e[1] } : undefined;
  },
  /** Stores `value` if the entry is still at `version` (0: only if absent). False: someone wrote first; read again. */
  compareAndSet: (key: string, value: string, version: number): boolean => need().sharedSet(key, value, version >>> 0),
  /** Atomically adds `delta` to the integer at `key` (absent: 0); returns the new value. */
  add: (key: string, delta = 1): number => need().sharedAdd(key, delta),
  /**
   * Read-modify-write with compare-and-set, retried until it sticks: `fn` gets the
   * current value (undefined when absent) and returns the new one, or undefined to
   * leave it as it is. Returns what `fn` returned last.
   */
  update<T extends string | undefined>(key: string, fn: (current: string | undefined) => T, maxTries = 64): T {
    const h = need();
    for (let i = 0; ; i++) {
      const cur = h.sharedGet(key);
      const next = fn(cur?.[0]);
      if (next === undefined) return next;
      if (h.sharedSet(key, next, cur?.[1] ?? 0)) return next;
      if (i + 1 >= maxTries) throw new Error(`shared.update(${key}): still contended after ${maxTries} tries`);
    }
  },
};

/** What the proxy does with the request and what it knows about the upstream. */
export const traffic = {
  /** Request phase: hold the request `ms` before it goes upstream (delays of a chain add up). Needs `traffic`. */
  delay: (ms: number): void => need().delayRequest(Math.max(0, Math.floor(ms))),
  /** Request phase: send the request to this subset of the destination service. Needs `traffic`. */
  routeToSubset: (subset: string): void => need().routeToSubset(subset),
  /** Request phase: limit each upstream attempt to `ms` until response headers (0: none). Needs `traffic`. */
  setPerTryTimeout: (ms: number): void => need().setPerTryTimeout(Math.max(0, Math.floor(ms))),
  /** Requests (and retries) in flight to the destination service on this proxy. */
  load: (): { activeRequests: number; activeRetries: number } => {
    const [activeRequests, activeRetries] = need().upstreamLoad();
    return { activeRequests, activeRetries };
  },
};
