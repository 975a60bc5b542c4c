/**
 * Whether fusing a binding's whole chain into one instance (one guest entry per phase)
 * would pay. From the same run: the request phase over 1 and N instances of the measured
 * filter gives what each further filter adds (its entry plus its own work); the same over
 * a no-op filter (`entries.ts`, wasmtime) gives the entry alone. Fusing saves N − 1
 * entries per phase and keeps the filters' work.
 */
import type { EntryRow } from './entries.js';
import { RUNNERS, type HelloRow, type Runner } from './hello.js';

export interface Fusion {
  runner: Runner;
  length: number;
  /** p50 CPU time of one filter and of `length` filters, µs. */
  oneCpuUs: number;
  chainCpuUs: number;
  /** (chain − one) ÷ (length − 1): what each further filter adds, µs (CPU, and wall). */
  perFilterCpuUs: number;
  perFilterUs: number;
  /** The same for the no-op filter: one entry, µs CPU. */
  entryCpuUs: number;
  /** Share of the N-filter phase that is entries (N × entry ÷ phase). */
  entriesShare: number;
  /** The N-filter phase with N − 1 entries fewer, µs CPU. */
  fusedCpuUs: number;
  /** More than half of the N-filter phase is per-filter entries. */
  entriesDominate: boolean;
}

/** Needs the 1- and `length`-filter rows of `runner` and of the no-op filter on the same engine. */
export function fusion(rows: HelloRow[], runner: Runner, length: number, entries: EntryRow[]): Fusion | undefined {
  const one = rows.find((r) => r.runner === runner && r.chain === 1);
  const chain = rows.find((r) => r.runner === runner && r.chain === length);
  const e1 = entries.find((r) => r.chain === 1);
  const eN = entries.find((r) => r.chain === length);
  if (!one || !chain || !e1 || !eN || length < 2) return undefined;
  const entryCpuUs = (eN.cpuUs.p50 - e1.cpuUs.p50) / (length - 1);
  const entriesShare = (length * entryCpuUs) / chain.cpuUs.p50;
  return {
    runner, length, oneCpuUs: one.cpuUs.p50, chainCpuUs: chain.cpuUs.p50,
    perFilterCpuUs: (chain.cpuUs.p50 - one.cpuUs.p50) / (length - 1), perFilterUs: (chain.us.p50 - one.us.p50) / (length - 1),
    entryCpuUs, entriesShare, fusedCpuUs: chain.cpuUs.p50 - (length - 1) * entryCpuUs,
    entriesDominate: entriesShare > 0.5,
  };
}

/** One sentence for the report. */
export function fusionVerdict(f: Fusion): string {
  const where = `${RUNNERS[f.runner].engine} ${RUNNERS[f.runner].world}`;
  const pct = `${Math.round(f.entriesShare * 100)}%`;
  return `${where}: one entry costs ${f.entryCpuUs.toFixed(2)} µs CPU of the ${f.perFilterCpuUs.toFixed(2)} µs each further filter adds; entries are ${pct} of a ${f.length}-filter phase (${f.chainCpuUs.toFixed(2)} µs), so they ${f.entriesDominate ? 'dominate' : 'do not dominate'}; fused, the phase would cost about ${f.fusedCpuUs.toFixed(2)} µs CPU.`;
}
