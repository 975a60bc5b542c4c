/** Where and on what a run happened, for the results files. */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import type { BenchOptions } from './options.js';

/** Above this many cores used by other processes, the report warns that its numbers are skewed. */
export const BUSY_CORES = 0.3;

export interface RunMeta {
  date: string;
  node: string;
  v8: string;
  platform: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  git: { commit: string; dirty: boolean } | undefined;
  filter: string;
  quick: boolean;
  budgets: Pick<BenchOptions, 'v8' | 'wasmtimeIterations' | 'instances'>;
  /** os.loadavg() (1, 5, 15 min) when the run started and ended (the bench's own build and threads count too). */
  loadAverage: { start: number[]; end?: number[] };
  /**
   * Cores other processes kept busy (machine busy time minus the bench's own, Linux only):
   * in a 1 s sample before measuring, and on average while the filter ABI was measured.
   */
  otherCores: { before?: number; during?: number };
  durationSec?: number;
}

function git(repoRoot: string): RunMeta['git'] {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const status = execFileSync('git', ['status', '--porcelain'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { commit, dirty: status.trim().length > 0 };
  } catch {
    return undefined;
  }
}

export function runMeta(opts: BenchOptions): RunMeta {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    git: git(opts.repoRoot),
    filter: opts.filterDir.startsWith(opts.repoRoot) ? opts.filterDir.slice(opts.repoRoot.length + 1) : opts.filterDir,
    quick: opts.quick,
    budgets: { v8: opts.v8, wasmtimeIterations: opts.wasmtimeIterations, instances: opts.instances },
    loadAverage: { start: os.loadavg() },
    otherCores: {},
  };
}
