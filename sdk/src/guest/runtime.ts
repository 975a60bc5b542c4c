/**
 * @internal What the generated filter entry imports: binds a filter definition to the
 * engine and puts the host's clocks behind JavaScript's. Not for filter authors.
 */
import type { FilterDefinition } from './public-types.js';
import { bindFilter } from './bind.js';
import { natives } from './natives.js';

export function installFilter<C>(def: FilterDefinition<C>, fallbackName: string): void {
  const handler = bindFilter(def, fallbackName);
  installClocks();
  Object.defineProperty(globalThis, '__ambitHandler', { value: handler, configurable: false, enumerable: false, writable: false });
}

/**
 * `Date.now()`, `new Date()` and `performance.now()` read the host's clocks (capability
 * `clock`; without it the host refuses the call and names the capability). The engine's
 * own clocks read 0: a built filter carries no build time.
 */
function installClocks(): void {
  const n = natives();
  const RealDate = Date;
  class HostDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(n.now());
      else super(...(args as [string | number]));
    }
    static override now(): number {
      return n.now();
    }
  }
  // Called as a function, Date returns the current time as a string.
  const DateFunction = new Proxy(HostDate, {
    apply: () => new RealDate(n.now()).toString(),
  });
  Object.defineProperty(globalThis, 'Date', { value: DateFunction, configurable: true, writable: true, enumerable: false });
  const performance = { now: (): number => n.monotonic(), timeOrigin: 0 };
  Object.defineProperty(globalThis, 'performance', { value: performance, configurable: true, writable: true, enumerable: false });
}
