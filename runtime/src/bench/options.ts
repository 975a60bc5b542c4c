/** Command-line flags and the loop sizes they select. */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** How long one measured loop on V8 may run: warm-up first, then a fixed count capped by time. */
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
  /** The same filter as the 0.1 SDK built it (`filter.wasm`, `manifest.json`). */
  legacyDir: string;
  /** Builds and transpiled components live here. */
  workDir: string;
  /** Where latest.json / latest.md go. */
  resultsDir: string;
  /** Rebuild the filter even when the build cache matches. */
  rebuild: boolean;
  quick: boolean;
  /** Filters in the long chain (the fusion measurement). */
  longChain: number;
  /** In-thread calls on V8. */
  v8: LoopBudget;
  /** In-thread phases on wasmtime (`benchPhase`), after as many again to warm up. */
  wasmtimeIterations: number;
  /** Fresh wasmtime instances timed by `probeInstances`. */
  instances: number;
}

const HELP = `usage: node runtime/dist/bench/index.js [--quick] [--rebuild] [--filter <dir>]

  --quick          about 4x shorter measured loops (a smoke run; numbers are noisier)
  --rebuild        rebuild the filter component even if cached
  --filter <dir>   filter package to measure (default examples/filters/hello; the 0.1
                   column is always the hello filter of bench/fixtures/hello-0.1)

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
  return {
    repoRoot,
    filterDir,
    legacyDir: path.join(repoRoot, 'bench/fixtures/hello-0.1'),
    workDir: process.env.AMBIT_BENCH_DIR ?? path.join(os.tmpdir(), 'ambit-bench'),
    resultsDir: path.join(repoRoot, 'bench/results'),
    rebuild,
    quick,
    longChain: 5,
    // Warm-ups are not shortened: V8 tiers Wasm up (Liftoff → TurboFan) during the first calls.
    v8: { count: Math.round(20_000 * scale), budgetMs: Math.round(2_000 * scale), warmupCount: 2_000, warmupMs: 500 },
    wasmtimeIterations: Math.round(20_000 * scale),
    instances: quick ? 200 : 1000,
  };
}
