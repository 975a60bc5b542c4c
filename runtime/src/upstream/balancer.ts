/**
 * Picks an endpoint. `round-robin` cycles; `least-request` picks the less busy of two
 * random endpoints (power of two choices, Envoy's default). Ejected endpoints are
 * skipped unless every endpoint is ejected, in which case all are used (Envoy's
 * panic mode: better a possibly bad host than none).
 */
import type { Endpoint } from './endpoint.js';

export type BalancerPolicy = 'round-robin' | 'least-request';

export class Balancer {
  private next = 0;

  constructor(readonly policy: BalancerPolicy) {}

  pick(endpoints: readonly Endpoint[], now = Date.now(), exclude?: Endpoint): Endpoint | undefined {
    const n = endpoints.length;
    if (n === 0) return undefined;
    if (n === 1) return endpoints[0];
    let healthy: Endpoint[] | readonly Endpoint[] = endpoints;
    let anyEjected = false;
    for (const e of endpoints) if (e.ejected(now) || e === exclude) { anyEjected = true; break; }
    if (anyEjected) {
      healthy = endpoints.filter((e) => !e.ejected(now) && e !== exclude);
      if (healthy.length === 0) healthy = endpoints.filter((e) => e !== exclude);
      if (healthy.length === 0) healthy = endpoints;
    }
    if (this.policy === 'round-robin') {
      const e = healthy[this.next % healthy.length]!;
      this.next = (this.next + 1) % 0x7fffffff;
      return e;
    }
    const a = healthy[Math.floor(Math.random() * healthy.length)]!;
    if (healthy.length === 1) return a;
    let b = healthy[Math.floor(Math.random() * (healthy.length - 1))]!;
    if (b === a) b = healthy[healthy.length - 1]!;
    return b.active < a.active ? b : a;
  }
}
