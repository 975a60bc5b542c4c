/**
 * Passive outlier detection (Envoy's `consecutive_5xx`): an endpoint answering with
 * 5xx, or failing to connect or resetting, that many times in a row is ejected for
 * baseEjection × (number of ejections), as long as no more than maxEjectionPercent of
 * the service's endpoints are out.
 */
import type { Endpoint, OutlierPolicy } from './endpoint.js';

export function recordResult(
  ep: Endpoint, failed: boolean, all: readonly Endpoint[], policy: OutlierPolicy, now = Date.now(),
): boolean {
  if (!failed) {
    ep.consecutiveFailures = 0;
    return false;
  }
  ep.consecutiveFailures++;
  if (ep.consecutiveFailures < policy.consecutive5xx || ep.ejected(now)) return false;
  const ejected = all.reduce((n, e) => n + (e.ejected(now) ? 1 : 0), 0);
  if (((ejected + 1) / all.length) * 100 > policy.maxEjectionPercent && all.length > 1) return false;
  if (all.length === 1) return false;
  ep.ejections++;
  ep.ejectedUntil = now + policy.baseEjectionMs * ep.ejections;
  ep.consecutiveFailures = 0;
  return true;
}
