/**
 * Bounded measuring loops: a warm-up (count and time capped), then up to
 * `budget.count` timed iterations, stopped early when `budget.budgetMs` runs out.
 * Inputs are built before the clock starts; only the call is timed.
 */
import type { LoopBudget } from './options.js';

export interface LoopResult {
  /** Per-iteration durations in microseconds. */
  samples: Float64Array;
  /** Wall-clock milliseconds of the measured (not warm-up) part. */
  elapsedMs: number;
  /** Process CPU time (user + system, every thread) of the measured part, in milliseconds. */
  cpuMs: number;
  /** True when the time budget, not the count, ended the loop. */
  cappedByTime: boolean;
}

const now = (): number => performance.now();
const cpuSince = (start: NodeJS.CpuUsage): number => {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
};

export function timeSync<T>(prepare: () => T, run: (input: T) => unknown, budget: LoopBudget): LoopResult {
  const warmEnd = now() + budget.warmupMs;
  for (let i = 0; i < budget.warmupCount && now() < warmEnd; i++) run(prepare());
  const samples = new Float64Array(budget.count);
  const cpu = process.cpuUsage();
  const start = now();
  const deadline = start + budget.budgetMs;
  let n = 0;
  while (n < budget.count) {
    const input = prepare();
    const t0 = now();
    run(input);
    const t1 = now();
    samples[n++] = (t1 - t0) * 1000;
    if (t1 > deadline) break;
  }
  return { samples: samples.subarray(0, n), elapsedMs: now() - start, cpuMs: cpuSince(cpu), cappedByTime: n < budget.count };
}

/** Keeps `concurrency` calls in flight; each sample is one call's submit-to-settle time. */
export async function timeAsync<T>(
  prepare: () => T, run: (input: T) => Promise<unknown>, budget: LoopBudget, concurrency: number, onMeasureStart?: () => void,
): Promise<LoopResult> {
  const lane = async (until: number, claim: () => boolean, record?: (us: number) => void): Promise<void> => {
    while (now() < until && claim()) {
      const input = prepare();
      const t0 = now();
      await run(input);
      record?.((now() - t0) * 1000);
    }
  };
  const lanes = Math.max(1, concurrency);

  let warmLeft = budget.warmupCount;
  const warmEnd = now() + budget.warmupMs;
  await Promise.all(Array.from({ length: lanes }, () => lane(warmEnd, () => warmLeft-- > 0)));

  onMeasureStart?.();
  const samples = new Float64Array(budget.count);
  let n = 0;
  let left = budget.count;
  const cpu = process.cpuUsage();
  const start = now();
  const deadline = start + budget.budgetMs;
  await Promise.all(Array.from({ length: lanes }, () => lane(deadline, () => left-- > 0, (us) => { samples[n++] = us; })));
  return { samples: samples.subarray(0, n), elapsedMs: now() - start, cpuMs: cpuSince(cpu), cappedByTime: n < budget.count };
}
