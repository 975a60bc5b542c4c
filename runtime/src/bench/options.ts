/** Command-line flags and the loop budgets they select. */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** How long one measured loop may run: warm-up first, then a fixed count capped by time. */
export interface LoopBudget {
  warmupCount: number;
  warmupMs: number;
  count: number;
  budgetMs: number;
}

export interface BenchOptions {
  repoRoot: string;
  /** The filter package measured (default: the example `hello` filter). */
  filterDir: string;
  /** Builds, transpiled components and the plain-JS factory live here. */
  workDir: string;
  /** Where latest.json / latest.md go. */
  resultsDir: string;
  /** Rebuild the filter even when the build cache matches. */
  rebuild: boolean;
  quick: boolean;
  /** Worker threads of the V8 engine. */
  workers: number;
  /** Phases in flight in the concurrent engine runs. */
  concurrency: number;
  /** Filters in the long chain. */
  longChain: number;
  raw: LoopBudget;
  engine: LoopBudget;
  /** Instances created (and kept) per engine for creation time and memory. */
  instances: number;
  instancesBudgetMs: number;
}

const HELP = `usage: node runtime/dist/bench/index.js [--quick] [--rebuild] [--filter <dir>]

  --quick          about 4x shorter measured loops (a smoke run; numbers are noisier)
  --rebuild        rebuild the QuickJS and StarlingMonkey components even if cached
  --filter <dir>   filter package to measure (default examples/filters/hello)

Environment: AMBIT_BENCH_DIR (work folder, default $TMPDIR/ambit-bench).`;

export function parseOptions(argv: readonly string[]): BenchOptions {
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  let quick = false;
  let rebuild = false;
  let filterDir = path.join(repoRoot, 'examples/filters/hello');
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') quick = true;
    else if (a === '--rebuild') rebuild = true;
    else if (a === '--filter' && argv[i + 1]) filterDir = path.resolve(argv[++i]!);
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`${HELP}\n`);
      process.exit(0);
    } else {
      throw new Error(`unknown argument ${a}\n${HELP}`);
    }
  }
  const scale = quick ? 0.25 : 1;
  // Warm-ups are not shortened: V8 tiers a big Wasm module up (Liftoff → TurboFan) in the
  // background during the first few hundred milliseconds of calls.
  const budget = (count: number, budgetMs: number, warmupCount: number, warmupMs: number): LoopBudget => ({
    count: Math.max(50, Math.round(count * scale)),
    budgetMs: Math.round(budgetMs * scale),
    warmupCount,
    warmupMs,
  });
  return {
    repoRoot,
    filterDir,
    workDir: process.env.AMBIT_BENCH_DIR ?? path.join(os.tmpdir(), 'ambit-bench'),
    resultsDir: path.join(repoRoot, 'bench/results'),
    rebuild,
    quick,
    workers: 2,
    concurrency: 16,
    longChain: 5,
    raw: budget(20_000, 1_500, 500, 400),
    engine: budget(10_000, 2_000, 300, 400),
    instances: quick ? 10 : 40,
    instancesBudgetMs: quick ? 3_000 : 10_000,
  };
}
