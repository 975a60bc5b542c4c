/** Order statistics of a sample of durations. */
import type { SampleSummary } from './deps.js';

export interface Summary {
  count: number;
  mean: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of an ascending array, `q` in 0..1. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(q * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

export function summarize(samples: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    min: sorted.length ? sorted[0]! : Number.NaN,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

/** p50, p99 and mean: the shape `benchPhase` answers in, for rows measured both ways. */
export function sampleSummary(samples: ArrayLike<number>): SampleSummary {
  const { p50, p99, mean } = summarize(samples);
  return { p50, p99, mean };
}
