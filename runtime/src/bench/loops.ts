/**
 * The bounded measuring loop for calls on the bench's own thread: a warm-up (count and
 * time capped), then up to `budget.count` timed iterations, stopped early when
 * `budget.budgetMs` runs out. Inputs are built before the clock starts; only the call is
 * timed, in wall time and in CPU time.
 */
import type { LoopBudget } from './options.js';

export interface LoopResult {
  /** Per-iteration wall time, µs. */
  samples: Float64Array;
  /**
   * Per-iteration CPU time of the process (user + system), µs. The bench's thread is the
   * only one working during the loop, so this is the call's CPU time (plus V8's
   * background compiler and GC threads when they run); other processes do not inflate it.
   */
  cpuSamples: Float64Array;
  /** True when the time budget, not the count, ended the loop. */
  cappedByTime: boolean;
}

const now = (): number => performance.now();
const cpuUs = (): number => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

export function timeSync<T>(prepare: () => T, run: (input: T) => unknown, budget: LoopBudget): LoopResult {
  const warmEnd = now() + budget.warmupMs;
  for (let i = 0; i < budget.warmupCount && now() < warmEnd; i++) run(prepare());
  const samples = new Float64Array(budget.count);
  const cpuSamples = new Float64Array(budget.count);
  const deadline = now() + budget.budgetMs;
  let n = 0;
  while (n < budget.count) {
    const input = prepare();
    const c0 = cpuUs();
    const t0 = now();
    run(input);
    const t1 = now();
    cpuSamples[n] = cpuUs() - c0;
    samples[n++] = (t1 - t0) * 1000;
    if (t1 > deadline) break;
  }
  return { samples: samples.subarray(0, n), cpuSamples: cpuSamples.subarray(0, n), cappedByTime: n < budget.count };
}
