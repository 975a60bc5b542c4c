import type { HostImports } from '../abi/types.js';

let host: HostImports | undefined;

/** @internal Installed by the generated component entry before any phase runs. */
export function installHost(h: HostImports): void {
  host = h;
}

function need(): HostImports {
  if (!host) throw new Error('the Ambit host is not available outside a filter call');
  return host;
}

/** Writes to the node proxy's log, tagged with the filter's name. Needs the `log` capability. */
export const log = {
  trace: (msg: string): void => need().log('trace', msg),
  debug: (msg: string): void => need().log('debug', msg),
  info: (msg: string): void => need().log('info', msg),
  warn: (msg: string): void => need().log('warn', msg),
  error: (msg: string): void => need().log('error', msg),
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
