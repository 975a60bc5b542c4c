/**
 * Whether fusing a binding's whole chain into one instance (one guest entry per phase)
 * would pay: from the same run's one-filter and N-filter request phases of the same
 * filter, the marginal cost of each further filter (its entry into its own instance plus
 * the filter's own work) and the part of the phase that does not grow with the chain.
 * Fusing removes at most N − 1 entries; a no-op filter would split entry from work.
 */
import { RUNNERS, type HelloRow, type Runner } from './hello.js';

export interface Fusion {
  runner: Runner;
  length: number;
  /** p50 of one filter and of `length` filters, wall and CPU, µs. */
  oneUs: number;
  chainUs: number;
  oneCpuUs: number;
  chainCpuUs: number;
  /** (chain − one) ÷ (length − 1): what each further filter adds, µs (wall, CPU). */
  perFilterUs: number;
  perFilterCpuUs: number;
  /** one − perFilter: the part of a phase that does not grow with the chain, µs (CPU). */
  fixedCpuUs: number;
  /** Share of the chain's phase (CPU) that grows with the number of filters. */
  perFilterShare: number;
  /** Per-filter entries dominate: more than half of the chain's phase grows with the filters. */
  entriesDominate: boolean;
}

export function fusion(rows: HelloRow[], runner: Runner, length: number): Fusion | undefined {
  const one = rows.find((r) => r.runner === runner && r.chain === 1);
  const chain = rows.find((r) => r.runner === runner && r.chain === length);
  if (!one || !chain || length < 2) return undefined;
  const perFilterUs = (chain.us.p50 - one.us.p50) / (length - 1);
  const perFilterCpuUs = (chain.cpuUs.p50 - one.cpuUs.p50) / (length - 1);
  const perFilterShare = (length * perFilterCpuUs) / chain.cpuUs.p50;
  return {
    runner, length,
    oneUs: one.us.p50, chainUs: chain.us.p50, oneCpuUs: one.cpuUs.p50, chainCpuUs: chain.cpuUs.p50,
    perFilterUs, perFilterCpuUs, fixedCpuUs: one.cpuUs.p50 - perFilterCpuUs, perFilterShare,
    entriesDominate: perFilterShare > 0.5,
  };
}

/** One sentence for the report. */
export function fusionVerdict(f: Fusion): string {
  const where = `${RUNNERS[f.runner].engine} ${RUNNERS[f.runner].world}`;
  const pct = `${Math.round(f.perFilterShare * 100)}%`;
  return f.entriesDominate
    ? `${where}: per-filter entries dominate a ${f.length}-filter phase (${pct} of its CPU time grows with the filters, ${f.perFilterCpuUs.toFixed(2)} µs each); fusing would save at most ${((f.length - 1) * f.perFilterCpuUs).toFixed(2)} µs CPU per phase (${f.length - 1} entries, less the filters' own work).`
    : `${where}: per-filter entries do not dominate a ${f.length}-filter phase (${pct} of its CPU time grows with the filters, ${f.perFilterCpuUs.toFixed(2)} µs each; ${f.fixedCpuUs.toFixed(2)} µs is per phase); fusing would save at most ${((f.length - 1) * f.perFilterCpuUs).toFixed(2)} µs CPU per phase.`;
}
