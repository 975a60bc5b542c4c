import type { FilterCall, FilterStats } from './engine.js';

/** Adds one phase's calls to per-filter totals (what `FilterEngine.stats()` reports). */
export function recordCalls(totals: Map<string, FilterStats>, calls: readonly FilterCall[]): void {
  for (const c of calls) {
    let s = totals.get(c.filter);
    if (!s) totals.set(c.filter, (s = { calls: 0, traps: 0, deadlines: 0, totalMs: 0 }));
    s.calls++;
    s.totalMs += c.durationMs;
    if (c.outcome === 'trap') s.traps++;
    else if (c.outcome === 'deadline') s.deadlines++;
  }
}

/** A copy of the totals, safe to hand out. */
export function copyStats(totals: Map<string, FilterStats>): Map<string, FilterStats> {
  return new Map([...totals].map(([k, v]) => [k, { ...v }]));
}
